package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and commit are set at build time with -ldflags "-X
// main.version=… -X main.commit=…" (hack/ builds do: git describe, and
// the commit hack/release built).
var version, commit string

// verbose is -v, --verbose: one meaning for every command.
var verbose bool

// versionString is the version set at build time, or, for a plain go
// build, the commit Go recorded, marked as a development build.
func versionString() string {
	if version != "" {
		return version
	}
	v := "devel"
	if rev, modified := vcsInfo(); len(rev) >= 12 {
		v += "-" + rev[:12]
		if modified {
			v += "-dirty"
		}
	}
	return v
}

// vcsInfo is the commit Go recorded at build time, and whether the tree
// had changes.
func vcsInfo() (revision string, modified bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", false
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return revision, modified
}

// versionReport is what nixrescue version prints (docs/json.md).
type versionReport struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	// Dependencies are the modules built in, path → version.
	Dependencies map[string]string `json:"dependencies"`
}

func newVersionReport() versionReport {
	r := versionReport{Version: versionString(), Commit: commit, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Dependencies: map[string]string{}}
	if r.Commit == "" {
		r.Commit, _ = vcsInfo()
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			r.Dependencies[d.Path] = d.Version
		}
	}
	return r
}

// mainDependencies are the modules version names for people; --json has
// them all.
var mainDependencies = []string{
	"github.com/containerd/containerd/v2",
	"github.com/opencontainers/runc",
	"github.com/opencontainers/runtime-spec",
	"golang.org/x/sys",
	"github.com/spf13/cobra",
}

func newVersionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print nixrescue's version, commit and the versions of what it is built with",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return printReport(asJSON, newVersionReport(), writeVersion)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print it as JSON, with every module built in")
	return cmd
}

func writeVersion(w io.Writer, r versionReport) error {
	fmt.Fprintf(w, "nixrescue %s\n", r.Version)
	if r.Commit != "" {
		fmt.Fprintf(w, "commit:   %s\n", r.Commit)
	}
	fmt.Fprintf(w, "built by: %s for %s/%s\n", r.Go, r.OS, r.Arch)
	for _, m := range mainDependencies {
		if v, ok := r.Dependencies[m]; ok {
			fmt.Fprintf(w, "          %s %s\n", m, v)
		}
	}
	return nil
}
