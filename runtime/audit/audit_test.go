package audit

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/runtime/state"
)

func TestParseChoosesWhereTheHostLogs(t *testing.T) {
	for _, c := range []struct {
		asked   string
		sockets []string
		dest    string
		asked_  bool
	}{
		{"", []string{JournalSocket, SyslogSocket}, "journal:" + JournalSocket, false},
		{"auto", []string{SyslogSocket}, "syslog:" + SyslogSocket, false},
		{"", nil, "file:" + DefaultFile, false},
		{"journal", nil, "journal:" + JournalSocket, true},
		{"syslog:/tmp/x.sock", nil, "syslog:/tmp/x.sock", true},
		{"/var/log/a.log", nil, "file:/var/log/a.log", true},
	} {
		l, err := parse(c.asked, func(p string) bool {
			for _, s := range c.sockets {
				if s == p {
					return true
				}
			}
			return false
		})
		if err != nil || l.Dest() != c.dest || l.Asked != c.asked_ {
			t.Errorf("%q with sockets %v: %+v %v, want %s", c.asked, c.sockets, l, err, c.dest)
		}
	}
	for _, bad := range []string{"jornal", "syslog:relative.sock", "file:x"} {
		if _, err := parse(bad, func(string) bool { return false }); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func record() Record {
	code := 0
	now := time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC)
	return Record{Event: "end", Session: "nixrescue-0123456789ab", Target: "/dev/sdb", Disk: "disk /dev/sdb (serial S1)",
		Caller: state.Caller{Started: now.Add(-time.Minute), UID: 0, SudoUID: 1000, SudoUser: "alice", Command: []string{"nixrescue", "rebuild", "/dev/sdb"}},
		Ended:  &now, ExitStatus: &code, Wrote: []string{"bootloader grub installed on /dev/sdb"}}
}

func TestFileRecordsReadBack(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := l.Write(record()); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.Open(p)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for ; sc.Scan(); n++ {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.SudoUser != "alice" || *r.ExitStatus != 0 || len(r.Wrote) != 1 {
			t.Errorf("line %d: %s (%v)", n+1, sc.Text(), err)
		}
	}
	if n != 2 {
		t.Errorf("%d lines, want 2", n)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir.log")); err == nil {
		t.Error("a file in a missing directory accepted")
	}
}

// listen makes a datagram socket, as journald's and syslog's are, and
// returns its path and what arrives there.
func listen(t *testing.T) (string, <-chan string) {
	p := filepath.Join(t.TempDir(), "log.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	got := make(chan string, 4)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	return p, got
}

func TestJournalAndSyslogDatagrams(t *testing.T) {
	for _, kind := range []string{"journal", "syslog"} {
		p, got := listen(t)
		l, err := Open(kind + ":" + p)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Write(record()); err != nil {
			t.Fatal(err)
		}
		var msg string
		select {
		case msg = <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: nothing arrived", kind)
		}
		want := []string{"NIXRESCUE_SESSION=nixrescue-0123456789ab\n", "NIXRESCUE_SUDO_USER=alice\n", "NIXRESCUE_EXIT_STATUS=0\n", "SYSLOG_IDENTIFIER=nixrescue\n",
			"MESSAGE=nixrescue session nixrescue-0123456789ab of alice (uid 1000) through sudo on /dev/sdb ended with exit status 0; wrote: bootloader grub installed on /dev/sdb\n"}
		if kind == "syslog" {
			// <authpriv.notice>, the tag, the message and its JSON.
			want = []string{"<85>", "nixrescue[", "ended with exit status 0", `"sudo_user":"alice"`}
		}
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q lacks %q", kind, msg, w)
			}
		}
	}
	if _, err := Open("journal:" + filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Error("a journal socket that is not there accepted")
	}
}
