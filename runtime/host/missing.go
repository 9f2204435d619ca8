package host

import "fmt"

// MissingError says this host lacks a program or a kernel feature that
// something nixrescue was asked to do needs, and what to install.
type MissingError struct {
	// What is missing; Needs what needs it ("boot-test needs"); Install
	// what to install (a Debian package, or another way).
	What, Needs, Install string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("this host has no %s, which %s: install %s", e.What, e.Needs, e.Install)
}
