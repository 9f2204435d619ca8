//go:build docs

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenerateDocsCommand writes man pages and shell completions made from
// the commands themselves (hack/release ships them). Hidden: it is for
// packagers. Only in a binary built with the tag docs (hack/release builds
// one for this): cobra's man pages bring a Markdown parser whose
// initialisation every nixrescue process, and every container's init,
// would pay, with 0.5 MB of binary.
func newGenerateDocsCommand() *cobra.Command {
	var manDir, completionDir string
	cmd := &cobra.Command{
		Use:    "generate-docs --man DIR --completions DIR",
		Short:  "Write man pages and bash, zsh and fish completions",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			if manDir != "" {
				if err := os.MkdirAll(manDir, 0o755); err != nil {
					return err
				}
				header := &doc.GenManHeader{Title: "NIXRESCUE", Section: "1", Source: "nixrescue " + versionString(), Manual: "nixrescue manual"}
				if err := doc.GenManTree(root, header, manDir); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
			}
			if completionDir != "" {
				if err := os.MkdirAll(completionDir, 0o755); err != nil {
					return err
				}
				for name, gen := range map[string]func(string) error{
					"nixrescue.bash": func(p string) error { return root.GenBashCompletionFileV2(p, true) },
					"_nixrescue":     root.GenZshCompletionFile,
					"nixrescue.fish": func(p string) error { return root.GenFishCompletionFile(p, true) },
				} {
					if err := gen(filepath.Join(completionDir, name)); err != nil {
						return fmt.Errorf("completion %s: %w", name, err)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "write the man pages (section 1) into `DIR`")
	cmd.Flags().StringVar(&completionDir, "completions", "", "write the completions into `DIR`")
	return cmd
}
