package cli

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// tourSection is the README section whose console blocks TestReadmeTour
// runs.
const tourSection = "A two-terminal tour"

// volatile matches what differs from run to run in a command's output:
// timestamps and session incarnations. normalize replaces them alike in
// the README's text and in what the commands print.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`), "TIME"},
	{regexp.MustCompile(`("incarnation":"|--incarnation )[0-9a-f]{16}`), "${1}INCARNATION"},
}

func normalize(s string) string {
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.with)
	}
	return s
}

// tourStep is one "$ ./varwatch ..." line of a console block and the
// output printed under it, or (cmd nil) a block of output alone: more of
// what the running watch prints.
type tourStep struct {
	cmd  []string // the arguments after ./varwatch
	want string
	line int
}

func tourSteps(t *testing.T, b mdBlock) []tourStep {
	t.Helper()
	return consoleSteps(t, b, func(line int, cmd string) []string {
		args, ok := strings.CutPrefix(cmd, "./varwatch ")
		if !ok || strings.ContainsAny(args, `"'\|&;<>$`) {
			t.Fatalf("README.md:%d: %q is not a ./varwatch command this test can run", line, cmd)
		}
		return strings.Fields(args)
	})
}

// consoleSteps splits a console block into its "$ " commands, each parsed
// into arguments by args (given the line number and the command), and the
// output printed under each; output before any command is a step of its
// own with no command.
func consoleSteps(t *testing.T, b mdBlock, args func(line int, cmd string) []string) []tourStep {
	t.Helper()
	var steps []tourStep
	for i, line := range strings.SplitAfter(b.text, "\n") {
		if line == "" {
			continue
		}
		cmd, ok := strings.CutPrefix(line, "$ ")
		if !ok {
			if len(steps) == 0 {
				steps = append(steps, tourStep{line: b.line + 1 + i})
			}
			steps[len(steps)-1].want += line
			continue
		}
		steps = append(steps, tourStep{cmd: args(b.line+1+i, strings.TrimSpace(cmd)), line: b.line + 1 + i})
	}
	return steps
}

// TestReadmeTour runs the README's two-terminal tour as printed, against
// a fresh server: every command's output must be what the README shows
// under it (timestamps and incarnations aside), a watch runs in the
// background as in terminal A (stopped, as with Ctrl-C, by the next
// watch), an output block alone is more of what that watch prints, and
// the last watch ends by itself with status 0.
func TestReadmeTour(t *testing.T) {
	s := startServer(t)
	blocks, sections := mdBlocks(t, readmePath(t))
	var watch *background
	var watchWant string // everything the running watch must have printed
	ran := 0
	for i, b := range blocks {
		if sections[i] != tourSection || b.info != "console" || b.notRun {
			continue
		}
		for _, st := range tourSteps(t, b) {
			ran++
			switch {
			case st.cmd == nil:
				if watch == nil {
					t.Fatalf("README.md:%d: output, but no watch runs", st.line)
				}
				watchWant += st.want
				waitOutput(t, watch, watchWant, st.line)
			case st.cmd[0] == "watch":
				if watch != nil {
					watch.cancel() // Ctrl-C
					<-watch.done
					watch.done <- 0 // for the cleanup
				}
				watch, watchWant = s.start(t, st.cmd...), st.want
				waitOutput(t, watch, watchWant, st.line)
			default:
				r := s.run(st.cmd...)
				got := r.stdout + r.stderr
				if normalize(got) != normalize(st.want) {
					t.Fatalf("README.md:%d: ./varwatch %s printed\n%s\nthe README shows\n%s", st.line, strings.Join(st.cmd, " "), got, st.want)
				}
				if failed := strings.Contains(st.want, "varwatch: "); (r.code != 0) != failed {
					t.Fatalf("README.md:%d: ./varwatch %s exited %d", st.line, strings.Join(st.cmd, " "), r.code)
				}
			}
		}
	}
	if ran < 10 {
		t.Fatalf("ran %d steps of the tour: is the section %q still there?", ran, tourSection)
	}
	if watch == nil {
		t.Fatal("the tour runs no watch")
	}
	if code := watch.exit(t); code != 0 {
		t.Fatalf("the tour's last watch exited %d; stderr:\n%s", code, watch.stderr.String())
	}
	if got := watch.stdout.String(); normalize(got) != normalize(watchWant) {
		t.Fatalf("the tour's last watch printed\n%s\nthe README shows\n%s", got, watchWant)
	}
}

// waitOutput waits until the background command has printed want (once
// normalized), and fails if it printed anything else.
func waitOutput(t *testing.T, b *background, want string, line int) {
	t.Helper()
	want = normalize(want)
	deadline := time.After(waitTimeout)
	for {
		out, changed := b.stdout.snapshot()
		got := normalize(out)
		switch {
		case got == want:
			return
		case !strings.HasPrefix(want, got):
			t.Fatalf("README.md:%d: the watch printed\n%s\nthe README shows\n%s\nstderr:\n%s", line, got, want, b.stderr.String())
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("README.md:%d: timed out; the watch printed\n%s\nthe README shows\n%s\nstderr:\n%s", line, got, want, b.stderr.String())
		}
	}
}

// snapshot returns the output so far and a channel closed at the next
// write.
func (b *syncBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.changed
}
