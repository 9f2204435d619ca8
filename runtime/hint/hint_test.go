package hint

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	t.Cleanup(func() { words.Store(nil) })
	const s = "pass {ReadOnly} to look, or {Mount DEVICE:/boot}; {NotAnOption} and {braces} stay"
	if got := Render(s); got != "pass the ReadOnly option to look, or Mount=DEVICE:/boot; {NotAnOption} and {braces} stay" {
		t.Errorf("default words: %q", got)
	}
	SetWords(func(o Option, v string) string {
		if v != "" {
			return "--" + strings.ToLower(string(o)) + " " + v
		}
		return "--" + strings.ToLower(string(o))
	})
	if got := Render(s); got != "pass --readonly to look, or --mount DEVICE:/boot; {NotAnOption} and {braces} stay" {
		t.Errorf("set words: %q", got)
	}
	err := New("disk.img", Errorf("the image is read-only (mode %04o, {Force} ignored)", 0o444), "pass {ReadOnly}")
	if err.Error() != "disk.img: the image is read-only (mode 0444, --force ignored): pass --readonly" {
		t.Errorf("Error: %q", err)
	}
	wrapped := Errorf("open: %w", err)
	if !errors.Is(wrapped, err) || FixOf(wrapped) != "pass --readonly" {
		t.Errorf("wrapped: %v, fix %q", wrapped, FixOf(wrapped))
	}
}

// TestRuntimeMentionsKnownOptions: every option a message of the runtime
// mentions is one of Options, which the front end words; a misspelt one
// would reach the user as {Name}.
func TestRuntimeMentionsKnownOptions(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			for _, o := range Mentions(s) {
				if !known(o) {
					t.Errorf("%s: {%s} is not an option of package hint", fset.Position(lit.Pos()), o)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
