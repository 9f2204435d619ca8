// Command nixrescue repairs a broken NixOS install from any Linux rescue
// system: the mounted NixOS root becomes the rootfs of a recovery
// container, activation and the user's command run inside it, and nothing
// is left behind. This package turns flags into options, calls one
// function of runtime/commands per command, and writes its result for
// people or as JSON; the work is done in runtime/ and specs/.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/hint"
)

func init() {
	// Every nixrescue process is short-lived or holds little (the
	// session, runc's init): the collector at Go's default ran a few
	// times in a session for nothing. Four times the live heap stays
	// small; GOGC from the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// libcontainer starts this binary as a container's init, a container
	// runs it as its helper: not commands of ours (runtime/roles).
	commands.PlayRole()
}

// ExitFailure is nixrescue's status when it fails itself, as `docker run`
// and `podman run` have it; a command's own status passes through.
const ExitFailure = 125

// exitCoder is an error that carries its own exit status.
type exitCoder interface{ ExitCode() int }

// exitStatus is a command's exit status, passed through unchanged.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
func (e exitStatus) ExitCode() int { return int(e) }

func main() {
	// The runtime's messages mention options; here they are flags.
	hint.SetWords(flagWords)
	// A closed output (nixrescue inspect IMG | head -1) is an error of the
	// write, EPIPE, not a SIGPIPE that kills nixrescue before it has torn
	// its session down. (Notify, not Ignore: an ignored signal would stay
	// ignored in the programs nixrescue starts.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	cmd, err := newRootCommand().ExecuteC()
	os.Exit(exit(cmd, err))
}

// exit says how a command ended, and returns its exit status: a status of
// its own (the container's command, a signal), said already, or
// nixrescue's failure, said in one line (and, with --json, as an object
// on stdout).
func exit(cmd *cobra.Command, err error) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, syscall.EPIPE) {
		// Whoever read the output stopped reading: as a program killed by
		// SIGPIPE, quietly.
		return 128 + int(syscall.SIGPIPE)
	}
	code := exitCodeOf(err)
	if _, ok := err.(exitStatus); ok {
		return code
	}
	fmt.Fprintf(os.Stderr, "nixrescue: %v\n", err)
	if wantsJSON(cmd) && !jsonWritten {
		_ = writeJSON(errorReport{Error: err.Error(), Fix: hint.FixOf(err), ExitStatus: code})
	}
	return code
}

// exitCodeOf is the status nixrescue exits with for err: its own, or
// ExitFailure.
func exitCodeOf(err error) int {
	var ec exitCoder
	var host *exec.ExitError
	if errors.As(err, &ec) && !errors.As(err, &host) {
		return ec.ExitCode()
	}
	// A host program's failure (a status, or a signal: -1) is
	// nixrescue's own.
	return ExitFailure
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "nixrescue",
		Short: "Repair a NixOS install from any Linux rescue system",
		Long: `nixrescue repairs a NixOS install that does not boot, from any Linux rescue
system. The mounted NixOS root becomes the rootfs of a recovery container with
/dev, /proc, /sys and DNS injected; the system's activation and your command
run inside it, and nothing is left mounted or changed on the host.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Under sudo, the host's policy says what the caller may do.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error { return authorize(cmd) },
	}
	// -v is --verbose everywhere; --version has no short form, and says
	// what nixrescue version does.
	showVersion := root.Flags().Bool("version", false, "print the version (as nixrescue version)")
	root.Args = commandArgs
	root.SuggestionsMinimumDistance = 2
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if *showVersion {
			return printReport(false, newVersionReport(), writeVersion)
		}
		return cmd.Help()
	}
	root.SetFlagErrorFunc(flagError)
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "say more about what nixrescue does: which backend runs a session, and why")
	root.AddCommand(newRunCommand(), newEnterCommand(), newSpecCommand(), newInspectCommand(), newCleanupCommand(), newRebuildCommand(), newGenerationsCommand(), newRollbackCommand(), newHardwareConfigCommand(), newBootTestCommand(), newDoctorCommand(), newPruneCommand(), newPSCommand(), newVersionCommand())
	if docs := newGenerateDocsCommand(); docs != nil {
		root.AddCommand(docs)
	}
	registerCompletions(root)
	return root
}
