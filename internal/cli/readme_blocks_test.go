package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README examples are run by tests, as printed: the tour's console
// blocks (TestReadmeTour), the Go snippets (TestReadmeGoSnippetsBuild)
// and the Python examples (clients/python/tests/test_readme_examples.py).
// A block that cannot run as printed (it needs TLS files, or a server
// stopped mid-watch) is marked on the line before its fence with
//
//	<!-- example: not run (why) -->
//
// and the tests skip it; keep those few.

// notRunMarker opens the comment that marks a block the tests skip.
const notRunMarker = "<!-- example: not run"

// mdBlock is one fenced code block of a markdown file.
type mdBlock struct {
	info   string // what follows the opening fence: "console", "go", ...
	text   string // the lines between the fences, each ending in "\n"
	line   int    // of the opening fence, 1-based
	notRun bool   // marked with notRunMarker
}

// readmePath is the repository's README.md.
func readmePath(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mdBlocks returns the fenced blocks of the markdown file at path, with the
// section (the last "## " heading) each one is in.
func mdBlocks(t *testing.T, path string) (blocks []mdBlock, sections []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	section, prev := "", ""
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], "\n")
		if strings.HasPrefix(line, "## ") {
			section = strings.TrimPrefix(line, "## ")
		}
		if !strings.HasPrefix(line, "```") {
			if strings.TrimSpace(line) != "" {
				prev = line
			}
			continue
		}
		b := mdBlock{info: strings.TrimPrefix(line, "```"), line: i + 1, notRun: strings.HasPrefix(prev, notRunMarker)}
		for i++; i < len(lines) && strings.TrimRight(lines[i], "\n") != "```"; i++ {
			b.text += strings.TrimRight(lines[i], "\n") + "\n"
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: the block never closes", path, b.line)
		}
		blocks = append(blocks, b)
		sections = append(sections, section)
		prev = ""
	}
	return blocks, sections
}
