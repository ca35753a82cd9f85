package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goSnippetHarness wraps a README Go snippet, a function body, into a
// program: the snippet is the body of main, with ctx and token (what the
// prose says the caller has) declared, and the packages the snippets use
// imported (each referenced once, so a snippet need not use them all).
const goSnippetHarness = `package main

import (
	"context"
	"fmt"
	"log"

	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

var (
	_ = fmt.Println
	_ = log.Fatal
	_ = client.New
	_ = pb.View_VIEW_FULL
)

func main() {
	ctx := context.Background()
	token := ""
	_, _ = ctx, token
%s}
`

// TestReadmeGoSnippetsBuild builds every Go block of README.md, as
// printed, inside the harness above. The programs are laid over the
// module with go build -overlay, so they build against this checkout
// without a file written into it.
func TestReadmeGoSnippetsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds programs")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	blocks, _ := mdBlocks(t, readmePath(t))
	dir := t.TempDir()
	built := 0
	for _, b := range blocks {
		if b.info != "go" || b.notRun {
			continue
		}
		built++
		t.Run(fmt.Sprintf("README.md:%d", b.line), func(t *testing.T) {
			src := filepath.Join(dir, fmt.Sprintf("snippet%d.go", b.line))
			if err := os.WriteFile(src, []byte(fmt.Sprintf(goSnippetHarness, b.text)), 0o644); err != nil {
				t.Fatal(err)
			}
			// A path in the module that does not exist: the overlay
			// makes it a package of its own.
			pkg := filepath.Join(root, "internal", "cli", "testdata", "readme-snippet", fmt.Sprint(b.line))
			overlay, err := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(pkg, "main.go"): src}})
			if err != nil {
				t.Fatal(err)
			}
			overlayFile := filepath.Join(dir, fmt.Sprintf("overlay%d.json", b.line))
			if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(goTool, "build", "-overlay", overlayFile, "-o", os.DevNull, "./"+filepath.ToSlash(must(filepath.Rel(root, pkg))))
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("the snippet does not build: %v\n%s\nas the harness wrapped it:\n%s", err, out, numbered(fmt.Sprintf(goSnippetHarness, b.text)))
			}
		})
	}
	if built < 2 {
		t.Fatalf("built %d Go snippets of README.md, want its 2 at least", built)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func numbered(src string) string {
	var b strings.Builder
	for i, line := range strings.Split(src, "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, line)
	}
	return b.String()
}
