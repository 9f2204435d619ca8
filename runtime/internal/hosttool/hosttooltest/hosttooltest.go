// Package hosttooltest answers the calls nixrescue makes to the host's
// programs (runtime/internal/hosttool) from a record, for tests that need
// neither root nor the programs, as net/http/httptest serves HTTP.
//
//	rec := &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{
//		"blkid -p --no-part-details -o udev /dev/sda1": {Stdout: "ID_FS_TYPE=ext4\n"},
//	}}
//	ctx := rec.Context(context.Background())
package hosttooltest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
)

// Answer is what a program did when it was recorded.
type Answer struct {
	Stdout, Stderr string
	Code           int
	// Missing says the program is not installed.
	Missing bool
}

// Record answers each command line (hosttool.Command.String) it has an
// Answer for. Any other is answered as a missing program and listed in
// Unexpected, so that a test sees what it did not foresee.
type Record struct {
	Answers map[string]Answer
	// AnswerPrefix answers the command lines that start with a key and
	// have no answer of their own (a line with a temporary directory).
	AnswerPrefix map[string]Answer

	mu         sync.Mutex
	calls      []string
	stdin      map[string]string
	unexpected []string
}

// Context is ctx with r answering the host's programs.
func (r *Record) Context(ctx context.Context) context.Context {
	return hosttool.WithRunner(ctx, r)
}

// Run implements hosttool.Runner.
func (r *Record) Run(ctx context.Context, c hosttool.Command) (hosttool.Result, error) {
	line := c.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, line)
	if c.Stdin != nil {
		b, _ := io.ReadAll(c.Stdin)
		if r.stdin == nil {
			r.stdin = map[string]string{}
		}
		r.stdin[line] = string(b)
	}
	if err := ctx.Err(); err != nil {
		return hosttool.Result{}, err
	}
	a, ok := r.Answers[line]
	for prefix, pa := range r.AnswerPrefix {
		if !ok && strings.HasPrefix(line, prefix) {
			a, ok = pa, true
		}
	}
	if !ok {
		r.unexpected = append(r.unexpected, line)
		return hosttool.Result{}, fmt.Errorf("no recorded answer for %q: %w", line, exec.ErrNotFound)
	}
	if a.Missing {
		return hosttool.Result{}, exec.ErrNotFound
	}
	out := a.Stdout
	if c.Combined {
		out += a.Stderr
	}
	return hosttool.Result{Stdout: []byte(out), Stderr: []byte(a.Stderr), Code: a.Code}, nil
}

// Start implements hosttool.Runner: the started program is answered as
// a run one is (Missing: not installed), and has ended, with the
// answer's status, by the time Wait is called.
func (r *Record) Start(c hosttool.Command, d hosttool.Daemon) (hosttool.Process, error) {
	res, err := r.Run(context.Background(), c)
	if err != nil {
		return nil, err
	}
	if d.Output != nil {
		_, _ = d.Output.Write(append(res.Stdout, res.Stderr...))
	}
	return process{code: res.Code}, nil
}

// process is a started program of a record.
type process struct{ code int }

func (process) PID() int               { return 0 }
func (process) Signal(os.Signal) error { return nil }
func (p process) Wait() error {
	if p.code != 0 {
		return fmt.Errorf("exit status %d", p.code)
	}
	return nil
}

// Calls are the command lines run, in order.
func (r *Record) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// Stdin is what the command line was given on its standard input (a key).
func (r *Record) Stdin(line string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stdin[line]
}

// Unexpected are the command lines run that had no answer.
func (r *Record) Unexpected() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.unexpected...)
}
