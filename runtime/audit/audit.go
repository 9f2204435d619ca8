// Package audit writes a record of each session where the rescue host
// keeps its logs: who started it (and who called sudo), on which target,
// with which command, when it began and ended, its exit status, and what
// it wrote (a bootloader installed, the system profile switched, the
// hardware configuration replaced). On a shared rescue host that is how
// one knows afterwards who changed which disk.
//
// A record goes to the systemd journal (its native protocol, with
// NIXRESCUE_* fields), to syslog (the authpriv facility), or to a file
// of JSON lines. Each session writes two: "start" as it begins, so that
// a session killed before its end still left a trace, and "end".
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/syslog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixrescue/nixrescue/runtime/state"
)

// Where records go when nothing is asked: the first of these the host
// has.
const (
	JournalSocket = "/run/systemd/journal/socket"
	SyslogSocket  = "/dev/log"
	DefaultFile   = "/var/log/nixrescue/audit.log"
)

// Record is one audit record. Its JSON field names (the file's lines)
// are stable (docs/json.md), and so are the journal's NIXRESCUE_ fields.
type Record struct {
	// Event is "start" or "end".
	Event   string `json:"event"`
	Session string `json:"session"`
	state.Caller
	Target string `json:"target"`
	Disk   string `json:"disk,omitempty"`
	// Ended, ExitStatus, Error and Wrote are the end's: when, the status
	// nixrescue exited with, its own failure if any, and what the session
	// wrote to the target.
	Ended      *time.Time `json:"ended,omitempty"`
	ExitStatus *int       `json:"exit_status,omitempty"`
	Error      string     `json:"error,omitempty"`
	Wrote      []string   `json:"wrote,omitempty"`
}

// Message is the record in one line, for people.
func (r Record) Message() string {
	who := "uid " + strconv.Itoa(r.UID)
	if r.SudoUser != "" {
		who = fmt.Sprintf("%s (uid %d) through sudo", r.SudoUser, r.SudoUID)
	}
	switch {
	case r.Event == "start":
		return fmt.Sprintf("nixrescue session %s started by %s on %s: %s", r.Session, who, r.Target, strings.Join(r.Command, " "))
	case r.ExitStatus == nil:
		return fmt.Sprintf("nixrescue session %s of %s on %s ended: %s", r.Session, who, r.Target, r.Error)
	case r.Error != "":
		return fmt.Sprintf("nixrescue session %s of %s on %s ended with exit status %d: %s; wrote: %s", r.Session, who, r.Target, *r.ExitStatus, r.Error, wrote(r.Wrote))
	}
	return fmt.Sprintf("nixrescue session %s of %s on %s ended with exit status %d; wrote: %s", r.Session, who, r.Target, *r.ExitStatus, wrote(r.Wrote))
}

func wrote(w []string) string {
	if len(w) == 0 {
		return "nothing nixrescue can tell"
	}
	return strings.Join(w, "; ")
}

// Log is where a session's records go.
type Log struct {
	// Kind is journal, syslog or file; Path is the socket or the file.
	Kind, Path string
	// Asked says the destination was chosen by the user: a record that
	// cannot be written then stops the session instead of a warning.
	Asked bool
}

// Dest is where records go, as Open reads it back (a killed session's
// journal keeps it for cleanup): journal:SOCKET, syslog:SOCKET or
// file:PATH.
func (l *Log) Dest() string { return l.Kind + ":" + l.Path }

// Open checks the destination asked for ("" or "auto": the journal, else
// syslog, else DefaultFile; "journal" or "syslog", at their usual
// sockets or at SOCKET after a colon; a file path) and that a record can
// be written there, without writing one.
func Open(asked string) (*Log, error) {
	l, err := parse(asked, func(p string) bool { return isSocket(p) })
	if err != nil {
		return nil, err
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	return l, nil
}

// parse reads a destination; hasSocket tells whether a socket is there
// (auto's choice).
func parse(asked string, hasSocket func(string) bool) (*Log, error) {
	switch kind, path, _ := strings.Cut(asked, ":"); {
	case asked == "" || asked == "auto":
		switch {
		case hasSocket(JournalSocket):
			return &Log{Kind: "journal", Path: JournalSocket}, nil
		case hasSocket(SyslogSocket):
			return &Log{Kind: "syslog", Path: SyslogSocket}, nil
		}
		return &Log{Kind: "file", Path: DefaultFile}, nil
	case kind == "journal" && path == "":
		return &Log{Kind: "journal", Path: JournalSocket, Asked: true}, nil
	case kind == "syslog" && path == "":
		return &Log{Kind: "syslog", Path: SyslogSocket, Asked: true}, nil
	case kind == "journal" || kind == "syslog" || kind == "file":
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("give an absolute path after %s:", kind)
		}
		return &Log{Kind: kind, Path: filepath.Clean(path), Asked: true}, nil
	case strings.Contains(asked, "/"):
		p, err := filepath.Abs(asked)
		if err != nil {
			return nil, err
		}
		return &Log{Kind: "file", Path: p, Asked: true}, nil
	}
	return nil, errors.New("not a place for records: give journal, syslog, or a file's path (./audit.log)")
}

func isSocket(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&os.ModeSocket != 0
}

// check tells whether a record could be written.
func (l *Log) check() error {
	path := l.Path
	if l.Kind != "file" {
		if !isSocket(path) {
			return fmt.Errorf("no %s socket at %s", l.Kind, path)
		}
		return nil
	}
	if !l.Asked {
		// The default file's directory is made the first time.
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return fmt.Errorf("make %s: %w", filepath.Dir(path), err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("%s: %w", path, errors.Unwrap(err))
	}
	return f.Close()
}

// Write writes r.
func (l *Log) Write(r Record) error {
	var err error
	switch l.Kind {
	case "journal":
		err = writeJournal(l.Path, r)
	case "syslog":
		err = writeSyslog(l.Path, r)
	default:
		err = writeFile(l.Path, r)
	}
	if err != nil {
		return fmt.Errorf("audit log %s: %w", l.Dest(), err)
	}
	return nil
}

// writeFile appends r as a line of JSON; one write(2) of one line to a
// file opened O_APPEND, so that sessions writing at once do not mix.
func writeFile(path string, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeSyslog sends r's message, with its JSON, to the authpriv facility
// (where sudo's records go).
func writeSyslog(path string, r Record) error {
	w, err := syslog.Dial("unixgram", path, syslog.LOG_AUTHPRIV|syslog.LOG_NOTICE, "nixrescue")
	if err != nil {
		return err
	}
	defer w.Close()
	b, _ := json.Marshal(r)
	return w.Notice(r.Message() + " " + string(b))
}

// JournalFields are r's fields as the journal stores them.
func JournalFields(r Record) [][2]string {
	f := [][2]string{
		{"MESSAGE", r.Message()},
		{"PRIORITY", "5"},
		{"SYSLOG_FACILITY", "10"},
		{"SYSLOG_IDENTIFIER", "nixrescue"},
		{"NIXRESCUE_EVENT", r.Event},
		{"NIXRESCUE_SESSION", r.Session},
		{"NIXRESCUE_UID", strconv.Itoa(r.UID)},
		{"NIXRESCUE_TARGET", r.Target},
		{"NIXRESCUE_COMMAND", strings.Join(r.Command, " ")},
		{"NIXRESCUE_STARTED", r.Started.UTC().Format(time.RFC3339)},
	}
	if r.SudoUser != "" {
		f = append(f, [2]string{"NIXRESCUE_SUDO_USER", r.SudoUser}, [2]string{"NIXRESCUE_SUDO_UID", strconv.Itoa(r.SudoUID)})
	}
	if r.Disk != "" {
		f = append(f, [2]string{"NIXRESCUE_DISK", r.Disk})
	}
	if r.Ended != nil {
		f = append(f, [2]string{"NIXRESCUE_ENDED", r.Ended.UTC().Format(time.RFC3339)})
	}
	if r.ExitStatus != nil {
		f = append(f, [2]string{"NIXRESCUE_EXIT_STATUS", strconv.Itoa(*r.ExitStatus)})
	}
	if r.Error != "" {
		f = append(f, [2]string{"NIXRESCUE_ERROR", r.Error})
	}
	if len(r.Wrote) > 0 {
		f = append(f, [2]string{"NIXRESCUE_WROTE", strings.Join(r.Wrote, "; ")})
	}
	return f
}

// writeJournal sends r in the journal's native protocol: one datagram of
// FIELD=value lines (a value with a newline in it is sent in the
// protocol's length-prefixed form).
func writeJournal(path string, r Record) error {
	var b strings.Builder
	for _, kv := range JournalFields(r) {
		if strings.Contains(kv[1], "\n") {
			n := len(kv[1])
			b.WriteString(kv[0] + "\n")
			b.Write([]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24), byte(n >> 32), byte(n >> 40), byte(n >> 48), byte(n >> 56)})
			b.WriteString(kv[1] + "\n")
			continue
		}
		b.WriteString(kv[0] + "=" + kv[1] + "\n")
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(b.String()))
	return err
}
