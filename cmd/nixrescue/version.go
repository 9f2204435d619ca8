package main

import (
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…" (hack/
// builds do, from git describe).
var version string

// verbose is -v, --verbose: one meaning for every command.
var verbose bool

// versionString is the version set at build time, or, for a plain go
// build, the commit Go recorded, marked as a development build.
func versionString() string {
	if version != "" {
		return version
	}
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && len(s.Value) >= 12:
				v += "-" + s.Value[:12]
			case s.Key == "vcs.modified" && s.Value == "true":
				v += "-dirty"
			}
		}
	}
	return v
}
