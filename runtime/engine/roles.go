package engine

import (
	"fmt"
	"os"

	"github.com/nixrescue/nixrescue/runtime/backend/embedded"
	"github.com/nixrescue/nixrescue/runtime/helper"
	"github.com/nixrescue/nixrescue/runtime/roles"
)

// PlayRole plays the role this start of the binary was started for
// (runtime/roles), when it is not a command a user typed: runc's init of
// a container, the in-container helper's Go modes; neither returns. For a
// command it returns, its main goroutine kept on the main thread, as
// libcontainer needs. Call it first, from main's init.
func PlayRole() {
	embedded.MaybeInit()
	switch roles.Of(os.Args) {
	case roles.Helper:
		helper.Main(os.Args[1:])
	case roles.Hold, roles.Guard:
		// Their C constructors took them before Go started.
		fmt.Fprintln(os.Stderr, "nixrescue: the hold and the guard run before Go starts; this start is neither")
		os.Exit(2)
	}
}
