package cli

import (
	"io"
	"strconv"
	"strings"
	"testing"
)

// "varwatch set SESSION -" writes stdin's lines in order over one write
// stream, creates missing variables with --create, reports each bad line
// by number and goes on, and exits 1 when any failed.
func TestSetFromStdin(t *testing.T) {
	s := startServer(t)
	s.mustRun(t, "session", "create", "--id", "s")
	s.mustRun(t, "register", "s", "temp", "float", "0")
	defer func(r io.Reader) { stdin = r }(stdin)

	var in strings.Builder
	for i := 1; i <= 500; i++ {
		in.WriteString("temp " + strconv.Itoa(i) + "\n")
	}
	in.WriteString("\n# a comment\nghost 1\ntemp hot\n")
	stdin = strings.NewReader(in.String())
	r := s.run("set", "s", "-")
	if r.code != 1 || r.stdout != "500 written, revision 501\n" ||
		!strings.Contains(r.stderr, "line 503 (ghost): ") || !strings.Contains(r.stderr, "line 504 (temp): ") {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	if got := s.mustRun(t, "get", "s", "temp"); !strings.Contains(got, "temp = 500 ") || !strings.Contains(got, "version=501") {
		t.Fatalf("get: %q", got)
	}

	stdin = strings.NewReader("m.loss 0.5\nm.loss 0.25\nm.step 3\n")
	if got := s.mustRun(t, "set", "s", "-", "--create", "float"); got != "3 written, revision 504\n" {
		t.Fatalf("set --create printed %q", got)
	}
	if got := s.mustRun(t, "get", "s", "m.loss"); !strings.Contains(got, "m.loss = 0.25 (float") {
		t.Fatalf("get: %q", got)
	}
	if r := s.run("set", "s", "x"); r.code != 2 {
		t.Fatalf("set with two arguments, not -: exit %d %q", r.code, r.stderr)
	}
}
