package dist

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryLeavesOutWhatSessionsNeverUse: the nixrescue every build makes
// (hack/lib.sh's build_static and its tags, which hack/release and the
// tests use) links neither grpc's tracing pages (x/net/trace, and with them
// html/template) nor cobra's man page generator (go-md2man, blackfriday):
// every nixrescue process maps and initialises what is linked, a session
// starts two, and together they were 4.6 MB of its 18.3 MB of code. The
// man pages come from a binary built with the tag docs, which has them.
func TestBinaryLeavesOutWhatSessionsNeverUse(t *testing.T) {
	list := func(extra string) string {
		cmd := exec.Command("sh", "-c", `. hack/lib.sh && go list -deps -tags "$nixrescue_tags`+extra+`" ./cmd/nixrescue`)
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		return string(out)
	}
	deps := list("")
	for _, pkg := range []string{"golang.org/x/net/trace", "html/template", "github.com/cpuguy83/go-md2man/v2/md2man", "github.com/russross/blackfriday/v2"} {
		if strings.Contains(deps, "\n"+pkg+"\n") {
			t.Errorf("the binary links %s", pkg)
		}
	}
	if docs := list(" docs"); !strings.Contains(docs, "\ngithub.com/spf13/cobra/doc\n") {
		t.Error("the binary built with the tag docs does not link cobra's man page generator: hack/release could not make the man pages")
	}
}
