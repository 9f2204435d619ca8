// Package lazyre compiles a package's regular expressions on first use
// instead of at start-up. Every process of nixrescue runs every package's
// initialisation, and it is re-executed for each container it starts
// (libcontainer's init), so what init does is paid many times per session;
// most runs use none of these expressions.
package lazyre

import (
	"regexp"
	"sync"
)

// New returns a function that compiles expr on its first call (panicking
// on a bad expression, as regexp.MustCompile does) and returns the same
// *regexp.Regexp on every call.
func New(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
