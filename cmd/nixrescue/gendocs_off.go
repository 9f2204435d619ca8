//go:build !docs

package main

import "github.com/spf13/cobra"

// newGenerateDocsCommand is nil without the tag docs (gendocs.go).
func newGenerateDocsCommand() *cobra.Command { return nil }
