// Command nixrescue repairs a broken NixOS install from any Linux rescue
// system: the mounted NixOS root becomes the rootfs of a recovery
// container, activation and the user's command run inside it, and nothing
// is left behind. This package only turns flags into options and results
// into exit statuses; the work is done in runtime/ and specs/.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/backend/embedded"
	"github.com/nixrescue/nixrescue/runtime/helper"
	"github.com/nixrescue/nixrescue/runtime/session"
	"github.com/nixrescue/nixrescue/specs"
)

func init() {
	// Every nixrescue process is short-lived or holds little (the
	// session, runc's init): its live heap is a few MiB, and at
	// Go's default the collector ran two or three times in a session for
	// nothing (~2 ms of CPU in the session process alone, measured with
	// perf). Four times the live heap stays well under the memory target
	// (the README's Performance section); GOGC from the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// libcontainer re-executes this binary as "init" to set a container
	// up; that is not a command of ours.
	embedded.MaybeInit()
}

// exitCoder is an error that carries its own exit status.
type exitCoder interface{ ExitCode() int }

// exitStatus is a command's exit status, passed through unchanged.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
func (e exitStatus) ExitCode() int { return int(e) }

func main() {
	if os.Args[0] == specs.HelperPath {
		helper.Main(os.Args[1:])
	}
	// A closed output (nixrescue inspect IMG | head -1) is an error of the
	// write, EPIPE, not a SIGPIPE that kills nixrescue before it has torn
	// its session down. (Notify, not Ignore: an ignored signal would stay
	// ignored in the programs nixrescue starts.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	root := newRootCommand()
	cmd, err := root.ExecuteC()
	if err == nil {
		os.Exit(0)
	}
	code := session.ExitFailure
	var ec exitCoder
	if errors.As(err, &ec) {
		code = ec.ExitCode()
	}
	if errors.Is(err, syscall.EPIPE) {
		// Whoever read the output stopped reading: as a program killed by
		// SIGPIPE, quietly.
		os.Exit(128 + int(syscall.SIGPIPE))
	}
	if _, ok := err.(exitStatus); !ok {
		fmt.Fprintf(os.Stderr, "nixrescue: %v\n", err)
		if wantsJSON(cmd) && !jsonWritten {
			_ = writeJSON(errorReport{Error: err.Error(), ExitStatus: code})
		}
	}
	os.Exit(code)
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "nixrescue",
		Short: "Repair a NixOS install from any Linux rescue system",
		Long: `nixrescue repairs a NixOS install that does not boot, from any Linux rescue
system. The mounted NixOS root becomes the rootfs of a recovery container with
/dev, /proc, /sys and DNS injected; the system's activation and your command
run inside it, and nothing is left mounted or changed on the host.`,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// -v is --verbose everywhere; --version has no short form.
	root.Flags().Bool("version", false, "print the version")
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "say more about what nixrescue does: which backend runs a session, and why")
	root.AddCommand(newRunCommand(), newEnterCommand(), newSpecCommand(), newInspectCommand(), newCleanupCommand(), newRebuildCommand(), newGenerationsCommand(), newRollbackCommand(), newHardwareConfigCommand())
	return root
}
