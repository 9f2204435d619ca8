package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/nixrescue/nixrescue/runtime/backend/containerd"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/privatens"
)

// commandsOfKind lists the commands annotated with kind (or any of kinds).
func commandsOfKind(root *cobra.Command, kinds ...string) []string {
	var out []string
	for _, c := range root.Commands() {
		if slices.Contains(kinds, c.Annotations[kindAnnotation]) {
			out = append(out, c.Name())
		}
	}
	sort.Strings(out)
	return out
}

// TestPrivatensReadsTheCommandLineAsCobraDefinesIt: runtime/privatens
// reads the command line in C, before Go starts, to move a session into a
// mount namespace of its own; it must know the commands that open a
// target and run a container, the flags that choose the backend and the
// socket, and the socket's default path, as the cobra commands define
// them. A command added, renamed or given other flags on one side only
// fails here.
func TestPrivatensReadsTheCommandLineAsCobraDefinesIt(t *testing.T) {
	root := newRootCommand()
	c := privatens.Reads()
	sorted := func(s []string) []string { s = slices.Clone(s); sort.Strings(s); return s }
	if got, want := sorted(c.Session), commandsOfKind(root, kindSession, kindContainer); !slices.Equal(got, want) {
		t.Errorf("privatens's session commands %q; the CLI's %q", got, want)
	}
	if got, want := sorted(c.Container), commandsOfKind(root, kindContainer); !slices.Equal(got, want) {
		t.Errorf("privatens's container commands %q; the CLI's %q", got, want)
	}
	for _, name := range commandsOfKind(root, kindContainer) {
		cmd, _, _ := root.Find([]string{name})
		backend := cmd.Flags().Lookup(strings.TrimPrefix(c.BackendFlag, "--"))
		address := cmd.Flags().Lookup(strings.TrimPrefix(c.AddressFlag, "--"))
		if backend == nil || address == nil {
			t.Errorf("%s has no %s or %s flag, which privatens reads", name, c.BackendFlag, c.AddressFlag)
			continue
		}
		if address.DefValue != c.DefaultAddress {
			t.Errorf("%s: %s defaults to %s; privatens takes %s", name, c.AddressFlag, address.DefValue, c.DefaultAddress)
		}
	}
	if c.DefaultAddress != containerd.DefaultAddress {
		t.Errorf("privatens's default socket %s is not containerd's %s", c.DefaultAddress, containerd.DefaultAddress)
	}
}

// TestEveryOptionHasAFlag: every option the runtime's messages may
// mention (runtime/hint) is worded as a flag some command has.
func TestEveryOptionHasAFlag(t *testing.T) {
	root := newRootCommand()
	for _, o := range hint.Options {
		w := flagWords(o, "")
		if o == hint.Target {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(w, "--"), " ")
		if !strings.HasPrefix(w, "--") {
			t.Errorf("option %s is worded %q, not as a flag", o, w)
			continue
		}
		found := false
		for _, c := range root.Commands() {
			found = found || c.Flags().Lookup(name) != nil
		}
		if !found {
			t.Errorf("option %s is worded %s, which no command has", o, w)
		}
	}
}

// cliDoc is docs/cli.md: every command's help, from the cobra commands.
func cliDoc(t *testing.T) []byte {
	t.Helper()
	root := newRootCommand()
	root.DisableAutoGenTag = true
	var b bytes.Buffer
	b.WriteString("# Command-line reference\n\nGenerated from the commands' own help by `go test ./cmd/nixrescue -run TestCLIDoc -update`; a test fails when it is stale.\n\n")
	link := func(name string) string { return "#" + strings.ReplaceAll(strings.TrimSuffix(name, ".md"), "_", "-") }
	for _, c := range append([]*cobra.Command{root}, root.Commands()...) {
		if !c.IsAvailableCommand() && c != root {
			continue
		}
		c.DisableAutoGenTag = true
		if err := doc.GenMarkdownCustom(c, &b, link); err != nil {
			t.Fatal(err)
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// TestCLIDoc: docs/cli.md is the commands' help as it is now.
func TestCLIDoc(t *testing.T) {
	got := cliDoc(t)
	p := filepath.Join("..", "..", "docs", "cli.md")
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("docs/cli.md is stale (%v): go test ./cmd/nixrescue -run TestCLIDoc -update writes it", err)
	}
}
