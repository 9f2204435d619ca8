package main

import (
	"encoding/json"
	"io"
	"os"
)

// textReport is a report that can also be written for people.
type textReport interface {
	WriteText(w io.Writer) error
}

// printReport writes r to stdout as JSON (--json) or as text.
func printReport(asJSON bool, r textReport) error {
	if asJSON {
		return writeJSON(r)
	}
	return r.WriteText(os.Stdout)
}

// writeJSON writes v to stdout, indented.
func writeJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// firstArg is the TARGET argument, or "".
func firstArg(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return ""
}
