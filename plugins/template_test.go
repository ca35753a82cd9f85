package plugins

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTemplateBuildsOutsideTheRepo runs plugins/README.md's "Writing a
// plugin in Go" as printed: its Go snippet must be template/main.go, and
// its shell commands, run from the repository root with a fresh home
// folder (the plugin lands in ~/myfilter, outside the repository) and no
// module downloads allowed, must build a plugin that the host loads and
// that drops negative floats.
func TestTemplateBuildsOutsideTheRepo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go plugin")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := sectionOf(t, string(readme), "## Writing a plugin in Go")
	snippet := fencedBlock(t, section, "go")
	main, err := os.ReadFile(filepath.Join("template", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if snippet != string(main) {
		t.Fatalf("the README's snippet is not template/main.go:\n%s\n---\n%s", snippet, main)
	}

	home := t.TempDir()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", fencedBlock(t, section, "sh"))
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "HOME="+home, "GOPROXY=off")
	// The module and build caches live under HOME by default: keep the
	// machine's, so that the build is incremental and provably offline.
	for _, v := range []string{"GOMODCACHE", "GOCACHE", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, v+"="+strings.TrimSpace(string(out)))
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's commands failed: %v\n%s", err, out)
	}
	wasm := filepath.Join(home, "myfilter", "myfilter.wasm")
	if rel, err := filepath.Rel("..", wasm); err == nil && !strings.HasPrefix(rel, "..") {
		t.Fatalf("the plugin was built inside the repository: %s", wasm)
	}

	m, _ := newManager(t, Config{Plugins: []PluginConfig{{Name: "myfilter", Path: wasm}}})
	c := acquire(t, m, FilterSpec{Name: "myfilter"})
	if got := actions(mustRun(t, c, []Update{change("a", 1, -2), change("b", 1, 3)})); got != "dp" {
		t.Fatalf("verdicts %q, want dp (drop the negative, pass the positive)", got)
	}
}

// sectionOf is the text of a Markdown section, from its heading to the
// next heading of the same level.
func sectionOf(t *testing.T, doc, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("no %q section", heading)
	}
	level := heading[:strings.Index(heading, " ")+1]
	if i := strings.Index(rest, "\n"+level); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// fencedBlock is the content of the first ```lang block of text.
func fencedBlock(t *testing.T, text, lang string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, "```"+lang+"\n")
	if !ok {
		t.Fatalf("no ```%s block in:\n%s", lang, text)
	}
	block, _, ok := strings.Cut(rest, "```\n")
	if !ok {
		t.Fatalf("unterminated ```%s block", lang)
	}
	return block
}
