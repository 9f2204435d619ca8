package engine

import (
	"errors"
	"fmt"
	"time"

	"github.com/nixrescue/nixrescue/runtime/audit"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/state"
)

// ExitFailure is nixrescue's exit status when it fails itself (as
// docker run's and podman run's), in the audit record.
const ExitFailure = 125

// phaseNames are the phases nixrescue ps shows, by the timer's steps.
var phaseNames = map[string]string{
	"attach":           "attaching",
	"discover":         "attaching",
	"mount":            "mounting",
	"container create": "running",
	"activation":       "running",
	"command":          "running",
	"boot":             "booting",
	"teardown":         "tearing down",
}

// recordCaller writes who started the session, how and where into its
// journal (nixrescue ps reads it), and the audit record of its start. A
// record that cannot be written stops the session when the user chose
// where records go; otherwise it is a warning.
func (s *Session) recordCaller() error {
	caller := state.ThisCaller(s.o.Command)
	backend := ""
	if s.o.Container {
		backend = s.backend.name
	}
	opened := s.timer.guard(GuardAudit)
	l, err := audit.Open(s.o.AuditLog)
	opened()
	switch {
	case err != nil && s.o.AuditLog != "" && s.o.AuditLog != "auto":
		return hint.Errorf("{AuditLog %s}: %v: name a file this host can write to, journal or syslog; the session does not run unaudited", s.o.AuditLog, err)
	case err != nil:
		s.log.Warn(hint.Render(fmt.Sprintf("audit log: %v: the session goes on unaudited ({AuditLog} chooses where records go)", err)))
	}
	s.audit = l
	dest := ""
	if l != nil {
		dest = l.Dest()
	}
	if err := s.st.Record(func(j *state.Journal) {
		j.Caller, j.Backend, j.Phase, j.Disk, j.Audit = caller, backend, "attaching", s.target.Where(), dest
		j.TargetArg, j.TargetKind = s.target.Arg, string(s.target.Kind)
	}); err != nil {
		return err
	}
	s.timer.onStart = s.setPhase
	if err := s.writeAudit(audit.Record{Event: "start"}); err != nil {
		return err
	}
	s.audited = s.audit != nil
	return nil
}

// setPhase records the phase the session is in, for nixrescue ps.
func (s *Session) setPhase(step string) {
	if p, ok := phaseNames[step]; ok && s.st != nil && s.st.Journal().Phase != p {
		_ = s.st.Record(func(j *state.Journal) { j.Phase = p })
	}
}

// Outcome tells the session how its command ended, for the audit record
// of its end: the exit status nixrescue exits with (or its failure), and
// what the command wrote to the target.
func (s *Session) Outcome(code int, err error, wrote ...string) {
	s.outcome.code, s.outcome.err, s.outcome.set = code, err, true
	s.outcome.wrote = append(s.outcome.wrote, wrote...)
}

// outcome is what Outcome was told.
type outcome struct {
	set   bool
	code  int
	err   error
	wrote []string
}

// auditEnd writes the audit record of the session's end, once it is torn
// down.
func (s *Session) auditEnd() {
	r := audit.Record{Event: "end", Wrote: s.outcome.wrote}
	now := time.Now()
	code := s.outcome.code
	switch {
	case s.outcome.err != nil:
		code, r.Error = ExitFailure, s.outcome.err.Error()
		var ec interface{ ExitCode() int }
		if errors.As(s.outcome.err, &ec) {
			code = ec.ExitCode()
		}
	case !s.outcome.set:
		code, r.Error = ExitFailure, "ended before its command ran"
	}
	r.Ended, r.ExitStatus = &now, &code
	if err := s.writeAudit(r); err != nil {
		s.log.Warn(err.Error())
	}
}

// writeAudit completes r from the journal and writes it.
func (s *Session) writeAudit(r audit.Record) error {
	if s.audit == nil || s.st == nil {
		return nil
	}
	defer s.timer.guard(GuardAudit)()
	j := s.st.Journal()
	r.Session, r.Caller, r.Target, r.Disk = s.st.ID, j.Caller, s.target.Path, j.Disk
	if err := s.audit.Write(r); err != nil {
		if s.audit.Asked {
			return err
		}
		s.log.Warn(err.Error() + " (the session goes on unaudited)")
	}
	return nil
}
