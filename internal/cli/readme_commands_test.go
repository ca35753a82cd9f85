package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/plugins"
)

// TestReadmeCommandsParse: every varwatch command of the README's sh
// blocks (a server to start, a watch with filters, ...) names a command
// and flags that exist, with values they accept. Each is run with --help
// appended, which parses everything before it and starts nothing; the
// tour's console blocks run for real in TestReadmeTour.
func TestReadmeCommandsParse(t *testing.T) {
	blocks, _ := mdBlocks(t, readmePath(t))
	checked := 0
	for _, b := range blocks {
		if b.info != "sh" || b.notRun {
			continue
		}
		for i, line := range strings.Split(strings.ReplaceAll(b.text, "\\\n", " "), "\n") {
			words := strings.Fields(line)
			if len(words) == 0 || (words[0] != "varwatch" && words[0] != "./varwatch") {
				continue
			}
			if strings.ContainsAny(line, `"'|&;<>$`) {
				t.Fatalf("README.md:%d: %q is not a command this test can parse", b.line+1+i, line)
			}
			var stdout, stderr bytes.Buffer
			if code := Run(context.Background(), append(words[1:], "--help"), &stdout, &stderr); code != 0 {
				t.Errorf("README.md:%d: %s: exit %d\n%s", b.line+1+i, line, code, stderr.String())
			}
			checked++
		}
	}
	if checked < 5 {
		t.Fatalf("checked %d varwatch commands of the README, want at least 5", checked)
	}
}

// TestReadmeFilesLoad: the README's example files load as printed: the
// filter config (the json block) through plugins.LoadConfigFile, and the
// token file (the text block) through grpcapi.ParseTokens.
func TestReadmeFilesLoad(t *testing.T) {
	blocks, _ := mdBlocks(t, readmePath(t))
	loaded := map[string]int{}
	for _, b := range blocks {
		switch b.info {
		case "json":
			path := filepath.Join(t.TempDir(), "filters.json")
			if err := os.WriteFile(path, []byte(b.text), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := plugins.LoadConfigFile(path); err != nil {
				t.Errorf("README.md:%d: the filter config does not load: %v", b.line, err)
			}
		case "text":
			if _, err := grpcapi.ParseTokens(strings.NewReader(b.text)); err != nil {
				t.Errorf("README.md:%d: the token file does not parse: %v", b.line, err)
			}
		default:
			continue
		}
		loaded[b.info]++
	}
	if loaded["json"] == 0 || loaded["text"] == 0 {
		t.Fatalf("loaded %v of the README's example files: are the blocks still there?", loaded)
	}
}
