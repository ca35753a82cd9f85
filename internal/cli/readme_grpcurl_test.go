package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// readmeToken is the token the README's grpcurl commands send.
const readmeToken = "s3cret-token-for-the-readme-0123"

// TestReadmeGrpcurl runs the "grpcurl" section's commands as printed
// against a server with a token file holding the README's token, and
// compares what they print (timestamps aside). It needs grpcurl on PATH
// or in $(go env GOPATH)/bin; scripts/test.sh installs it, and a plain
// `go test` without it skips.
func TestReadmeGrpcurl(t *testing.T) {
	grpcurl := findGrpcurl(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(readmeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--auth-token-file", tokens)
	blocks, sections := mdBlocks(t, readmePath(t))
	ran := 0
	for i, b := range blocks {
		if sections[i] != "Operating varwatch" || b.info != "console" || !strings.Contains(b.text, "$ grpcurl ") {
			continue
		}
		for _, st := range grpcurlSteps(t, b) {
			args := st.cmd
			for j, a := range args {
				if a == "localhost:50051" {
					args[j] = s.addr
				}
			}
			out, err := exec.Command(grpcurl, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("README.md:%d: grpcurl %s: %v\n%s", st.line, strings.Join(args, " "), err, out)
			}
			if normalize(string(out)) != normalize(st.want) {
				t.Fatalf("README.md:%d: grpcurl printed\n%s\nthe README shows\n%s", st.line, out, st.want)
			}
			ran++
		}
	}
	if ran < 3 {
		t.Fatalf("ran %d grpcurl commands of the README, want at least 3", ran)
	}
}

// grpcurlSteps splits a console block into "$ grpcurl ..." commands (single
// quotes group an argument, as a shell would) and the output under each.
func grpcurlSteps(t *testing.T, b mdBlock) []tourStep {
	t.Helper()
	steps := consoleSteps(t, b, func(line int, cmd string) []string {
		rest, ok := strings.CutPrefix(cmd, "grpcurl ")
		if !ok {
			t.Fatalf("README.md:%d: %q is not a grpcurl command", line, cmd)
		}
		var args []string
		for j, part := range strings.Split(rest, "'") {
			if j%2 == 1 {
				args = append(args, part)
			} else {
				args = append(args, strings.Fields(part)...)
			}
		}
		return args
	})
	if len(steps) > 0 && steps[0].cmd == nil {
		t.Fatalf("README.md:%d: output before any command", steps[0].line)
	}
	return steps
}

func findGrpcurl(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "grpcurl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("grpcurl is not installed (scripts/test.sh installs it)")
	return ""
}
