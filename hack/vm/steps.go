package vm

import (
	"strconv"
	"strings"
)

// Step is what one step of a rescue script (the guest's step function in
// /lib/vm.sh) printed, and its exit status.
type Step struct {
	Stdout, Stderr string
	ExitStatus     int
}

// Steps splits a rescue script's output into its steps, by name. A step
// that did not finish has exit status -1.
func Steps(output string) map[string]Step {
	steps := map[string]Step{}
	var name, part string
	var buf strings.Builder
	flush := func() {
		if name == "" {
			return
		}
		s := steps[name]
		switch part {
		case "stdout":
			s.Stdout = buf.String()
		case "stderr":
			s.Stderr = buf.String()
		}
		steps[name] = s
		buf.Reset()
	}
	for _, line := range strings.SplitAfter(output, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "@@@" {
			flush()
			switch f[1] {
			case "stdout", "stderr":
				name, part = f[2], f[1]
				if _, ok := steps[name]; !ok {
					steps[name] = Step{ExitStatus: -1}
				}
			case "exit":
				s := steps[f[2]]
				if len(f) >= 4 {
					s.ExitStatus, _ = strconv.Atoi(f[3])
				}
				steps[f[2]] = s
				name, part = "", ""
			}
			continue
		}
		if name != "" {
			buf.WriteString(line)
		}
	}
	flush()
	return steps
}
