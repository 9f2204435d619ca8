package main

import (
	"encoding/json"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// printReport writes r to stdout as JSON (--json) or for people (text).
// A write that fails (EPIPE: the reader went away) is its error.
func printReport[R any](asJSON bool, r R, text func(io.Writer, R) error) error {
	if asJSON {
		return writeJSON(r)
	}
	w := &checkedWriter{w: os.Stdout}
	if err := text(w, r); err != nil {
		return err
	}
	return w.err
}

// checkedWriter keeps the first error of its writes, for writers (text
// reports, tabwriter) that do not return them; it writes nothing after.
type checkedWriter struct {
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.err = err
	return n, err
}

// jsonWritten says a JSON document went to stdout already.
var jsonWritten bool

// writeJSON writes v to stdout, indented.
func writeJSON(v any) error {
	jsonWritten = true
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// errorReport is what a command asked for --json prints on stdout when it
// fails before it has a report (docs/json.md): the same line as on
// stderr, and the exit status.
type errorReport struct {
	Error string `json:"error"`
	// Fix is the error's fix alone, when it has one (it ends Error too).
	Fix        string `json:"fix,omitempty"`
	ExitStatus int    `json:"exit_status"`
}

// wantsJSON tells whether cmd was given --json.
func wantsJSON(cmd *cobra.Command) bool {
	if cmd == nil {
		return false
	}
	f := cmd.Flags().Lookup("json")
	if f == nil {
		return false
	}
	if f.Value.String() == "true" {
		return true
	}
	// The command line did not parse (an unknown flag): --json may be
	// after the flag that stopped it.
	for _, a := range os.Args[1:] {
		switch a {
		case "--":
			return false
		case "--json", "--json=true":
			return true
		}
	}
	return false
}

// firstArg is the TARGET argument, or "".
func firstArg(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return ""
}

// exitResult turns a command's exit status and error into main's error.
func exitResult(code int, err error) error {
	if err != nil {
		return err
	}
	if code != 0 {
		return exitStatus(code)
	}
	return nil
}
