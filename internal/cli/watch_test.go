package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	vwclient "github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// changeLines are the lines of a watch's output that are not heartbeats
// (a resume starts with a heartbeat at its start revision, so heartbeats
// may repeat; changes must not).
func changeLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" && !strings.HasSuffix(l, " heartbeat") {
			lines = append(lines, l)
		}
	}
	return lines
}

// incarnationOf reads a session's incarnation from session get.
func incarnationOf(t *testing.T, s *server, session string) string {
	t.Helper()
	for _, l := range strings.Split(s.mustRun(t, "session", "get", session), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "incarnation" {
			return f[1]
		}
	}
	t.Fatalf("session get %s shows no incarnation", session)
	return ""
}

// TestWatchResumesAfterDisconnect cuts the watch's connection and keeps
// the server away while two sets are made: the watch reconnects, prints
// both changes once, in order, says on stderr that it resumed, and still
// ends normally with the session.
func TestWatchResumesAfterDisconnect(t *testing.T) {
	clearSecurityEnv(t)
	for _, batched := range []bool{false, true} {
		t.Run(map[bool]string{false: "per-update", true: "batched"}[batched], func(t *testing.T) {
			s := startServer(t)
			s.mustRun(t, "session", "create", "--id", "s")
			s.mustRun(t, "register", "s", "x", "integer", "1")
			p := startProxy(t, s.addr)
			args := []string{"watch", "s", "--server", p.addr(), "--max-backoff", "50ms"}
			if batched {
				args = append(args, "--batched")
			}
			w := s.start(t, args...)
			w.stdout.waitFor(t, "rev=1 heartbeat")

			p.pause()
			s.mustRun(t, "set", "s", "x", "2")
			s.mustRun(t, "set", "s", "x", "3")
			p.resume(s.addr)
			w.stdout.waitFor(t, "rev=3 value_change")
			w.stderr.waitFor(t, "varwatch: reconnected; resumed after rev=1")

			s.mustRun(t, "session", "delete", "s")
			if code := w.exit(t); code != 0 {
				t.Fatalf("watch exited %d: %s", code, w.stderr.String())
			}
			want := []string{"rev=2 value_change x 1 -> 2 (source=cli)", "rev=3 value_change x 2 -> 3 (source=cli)", "rev=3 session_closed"}
			if got := changeLines(w.stdout.String()); !slices.Equal(got, want) {
				t.Fatalf("watch printed %q, want %q", got, want)
			}
		})
	}
}

// TestWatchStartRevision resumes from a revision given on the command
// line, and refuses a resume naming another incarnation with a hint.
func TestWatchStartRevision(t *testing.T) {
	clearSecurityEnv(t)
	s := startServer(t)
	s.mustRun(t, "session", "create", "--id", "s")
	s.mustRun(t, "register", "s", "x", "integer", "1")
	s.mustRun(t, "set", "s", "x", "2")
	s.mustRun(t, "set", "s", "x", "3")
	inc := incarnationOf(t, s, "s")

	w := s.start(t, "watch", "s", "--start-revision", "1", "--incarnation", inc)
	out := w.stdout.waitFor(t, "rev=3 value_change")
	if want := "rev=1 heartbeat\nrev=2 value_change x 1 -> 2 (source=cli)\nrev=3 value_change x 2 -> 3 (source=cli)\n"; out != want {
		t.Fatalf("watch printed %q, want %q", out, want)
	}

	tests := []struct {
		name string
		args []string
		code int
		msg  []string
	}{
		{"another incarnation", []string{"watch", "s", "--start-revision", "1", "--incarnation", "0123456789abcdef"}, 1,
			[]string{"varwatch: FAILED_PRECONDITION: ", "\nvarwatch: the history after rev=1 is gone (compacted, or the session was created again): watch again with --initial, or add --resnapshot\n"}},
		{"with --initial", []string{"watch", "s", "--start-revision", "1", "--initial"}, 2,
			[]string{"varwatch: --start-revision resumes a watch and --initial starts one: give one of them\n"}},
		{"negative", []string{"watch", "s", "--start-revision", "-1"}, 2,
			[]string{`want a revision (an integer, 0 or more), got "-1"`}},
		{"negative retries", []string{"watch", "s", "--retries", "-1"}, 2, []string{"--retries must not be negative"}},
		{"unknown session", []string{"watch", "nope"}, 1, []string{`varwatch: NOT_FOUND: session "nope" not found` + "\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.run(tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, stderr %q; want %d", r.code, r.stderr, tc.code)
			}
			for _, m := range tc.msg {
				if !strings.Contains(r.stderr, m) {
					t.Fatalf("stderr %q lacks %q", r.stderr, m)
				}
			}
			if tc.name == "unknown session" && strings.Count(r.stderr, "\n") != 1 {
				t.Fatalf("a watch that never started printed a resume hint: %q", r.stderr)
			}
		})
	}
}

// TestWatchIncarnationChanged points the watch, while it is away, at a
// server whose session of the same id is another incarnation (as after a
// restart without data): the resume is refused, and the watch either
// exits with a hint or, with --resnapshot, prints the new snapshot.
func TestWatchIncarnationChanged(t *testing.T) {
	clearSecurityEnv(t)
	for _, resnapshot := range []bool{false, true} {
		t.Run(map[bool]string{false: "exit", true: "resnapshot"}[resnapshot], func(t *testing.T) {
			a, b := startServer(t), startServer(t)
			for _, s := range []*server{a, b} {
				s.mustRun(t, "session", "create", "--id", "s")
			}
			a.mustRun(t, "register", "s", "x", "integer", "1")
			b.mustRun(t, "register", "s", "y", "integer", "7")
			p := startProxy(t, a.addr)
			args := []string{"watch", "s", "--initial", "--server", p.addr(), "--max-backoff", "50ms"}
			if resnapshot {
				args = append(args, "--resnapshot")
			}
			w := a.start(t, args...)
			w.stdout.waitFor(t, "rev=1 initial_values_complete")
			p.pause()
			p.resume(b.addr)
			if !resnapshot {
				if code := w.exit(t); code != 1 {
					t.Fatalf("watch exited %d, want 1", code)
				}
				if msg := w.stderr.String(); !strings.Contains(msg, "varwatch: FAILED_PRECONDITION: ") ||
					!strings.HasSuffix(msg, "varwatch: the history after rev=1 is gone (compacted, or the session was created again): watch again with --initial, or add --resnapshot\n") {
					t.Fatalf("watch stderr %q", msg)
				}
				return
			}
			w.stdout.waitFor(t, "rev=1 initial_value y 7\nrev=1 initial_values_complete\n")
			w.stderr.waitFor(t, "a fresh snapshot follows")
			b.mustRun(t, "set", "s", "y", "8")
			w.stdout.waitFor(t, "rev=2 value_change y 7 -> 8")
		})
	}
}

// TestWatchBatchedCoalesce runs a watch with --batched and --coalesce end
// to end: the same lines as a plain watch.
func TestWatchBatchedCoalesce(t *testing.T) {
	clearSecurityEnv(t)
	s := startServer(t)
	s.mustRun(t, "session", "create", "--id", "s")
	s.mustRun(t, "register", "s", "x", "integer", "1")
	w := s.start(t, "watch", "s", "--initial", "--batched", "--coalesce")
	w.stdout.waitFor(t, "rev=1 initial_values_complete")
	s.mustRun(t, "set", "s", "x", "2")
	out := w.stdout.waitFor(t, "rev=2 value_change")
	if want := "rev=1 initial_value x 1\nrev=1 initial_values_complete\nrev=2 value_change x 1 -> 2 (source=cli)\n"; out != want {
		t.Fatalf("watch printed %q, want %q", out, want)
	}
}

// TestWatchValueView: --view value prints the same lines from slim
// updates, and --json shows that they carry no creation fields.
func TestWatchValueView(t *testing.T) {
	clearSecurityEnv(t)
	s := startServer(t)
	s.mustRun(t, "session", "create", "--id", "s")
	s.mustRun(t, "register", "s", "x", "integer", "1")
	w := s.start(t, "watch", "s", "--initial", "--view", "value")
	w.stdout.waitFor(t, "rev=1 initial_values_complete")
	j := s.start(t, "watch", "s", "--view", "value", "--json")
	j.stdout.waitFor(t, `"heartbeat"`)
	s.mustRun(t, "set", "s", "x", "2")
	out := w.stdout.waitFor(t, "rev=2 value_change")
	if want := "rev=1 initial_value x 1\nrev=1 initial_values_complete\nrev=2 value_change x 1 -> 2 (source=cli)\n"; out != want {
		t.Fatalf("watch printed %q, want %q", out, want)
	}
	if js := j.stdout.waitFor(t, `"value_change"`); strings.Contains(js, "created_at") {
		t.Fatalf("a VALUE view update carries creation fields: %s", js)
	}
	if r := s.run("watch", "s", "--view", "value", "--batched"); r.code != 2 || !strings.Contains(r.stderr, "--view value") {
		t.Fatalf("--view value --batched: exit %d, %s", r.code, r.stderr)
	}
	if r := s.run("watch", "s", "--view", "slim"); r.code != 2 {
		t.Fatalf("--view slim: exit %d, %s", r.code, r.stderr)
	}
}

// TestWatchRequest checks what each flag puts into the request and the
// resuming options.
func TestWatchRequest(t *testing.T) {
	base := func() *pb.WatchVariablesRequest { return &pb.WatchVariablesRequest{SessionId: "s"} }
	defaults := vwclient.WatchOptions{Heartbeats: true, MaxAttempts: 30, MaxBackoff: 2 * time.Second}
	tests := []struct {
		flags []string
		req   func(*pb.WatchVariablesRequest)
		opts  func(*vwclient.WatchOptions)
	}{
		{nil, func(*pb.WatchVariablesRequest) {}, func(*vwclient.WatchOptions) {}},
		{[]string{"--start-revision", "0"}, func(r *pb.WatchVariablesRequest) { r.StartRevision = proto.Int64(0) }, func(*vwclient.WatchOptions) {}},
		{[]string{"--start-revision", "23", "--incarnation", "ab12"}, func(r *pb.WatchVariablesRequest) {
			r.StartRevision, r.Incarnation = proto.Int64(23), "ab12"
		}, func(*vwclient.WatchOptions) {}},
		{[]string{"--coalesce"}, func(r *pb.WatchVariablesRequest) { r.Coalesce = true }, func(*vwclient.WatchOptions) {}},
		{[]string{"--batched"}, func(*pb.WatchVariablesRequest) {}, func(o *vwclient.WatchOptions) { o.Batched = true }},
		{[]string{"--view", "value"}, func(*pb.WatchVariablesRequest) {}, func(o *vwclient.WatchOptions) { o.View = pb.View_VIEW_VALUE }},
		{[]string{"--resnapshot", "--retries", "0", "--max-backoff", "1s"}, func(*pb.WatchVariablesRequest) {},
			func(o *vwclient.WatchOptions) { o.Resnapshot, o.MaxAttempts, o.MaxBackoff = true, 0, time.Second }},
		{[]string{"--filter", "scale:a=2", "--pattern", "t*", "--initial"}, func(r *pb.WatchVariablesRequest) {
			r.Filters = []*pb.FilterSpec{{Name: "scale", Params: map[string]string{"a": "2"}}}
			r.Pattern, r.IncludeInitialValues = "t*", true
		}, func(*vwclient.WatchOptions) {}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.flags, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("watch", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			wf := addWatchFlags(fs)
			if err := fs.Parse(tc.flags); err != nil {
				t.Fatal(err)
			}
			req, opts, err := wf.request("s", nil)
			if err != nil {
				t.Fatal(err)
			}
			wantReq, wantOpts := base(), defaults
			tc.req(wantReq)
			tc.opts(&wantOpts)
			if !proto.Equal(req, wantReq) {
				t.Errorf("request %v, want %v", req, wantReq)
			}
			if opts != wantOpts {
				t.Errorf("options %+v, want %+v", opts, wantOpts)
			}
		})
	}
}

// TestWatchFilteredCannotResume: the server refuses start_revision on a
// filtered watch, so a filtered watch whose connection drops ends with a
// hint to start over instead of a resume point it could not use.
func TestWatchFilteredCannotResume(t *testing.T) {
	clearSecurityEnv(t)
	s := startServer(t, "--filter", "deadband="+deadbandPlugin(t)+",timeout=10s", "--filter-cache-dir", filterCache)
	s.mustRun(t, "session", "create", "--id", "s")
	s.mustRun(t, "register", "s", "x", "float", "0")
	p := startProxy(t, s.addr)
	w := s.start(t, "watch", "s", "--filter", "deadband:threshold=0.5", "--server", p.addr(), "--max-backoff", "50ms")
	w.stdout.waitFor(t, "rev=1 heartbeat")
	p.cut()
	if code := w.exit(t); code != 1 {
		t.Fatalf("watch exited %d, want 1", code)
	}
	if msg := w.stderr.String(); !strings.HasPrefix(msg, "varwatch: UNIMPLEMENTED: ") ||
		!strings.HasSuffix(msg, "\nvarwatch: a filtered watch cannot resume: watch again with --initial\n") {
		t.Fatalf("watch stderr %q", msg)
	}
}

// TestWatchResumeStress writes a sequence of values while the watch's
// connection is cut at random points between writes, and checks the
// watch's output against the model, the acknowledged writes: every one
// printed exactly once, in order, at its revision, whatever the cuts.
func TestWatchResumeStress(t *testing.T) {
	clearSecurityEnv(t)
	const writes = 150
	for _, batched := range []bool{false, true} {
		t.Run(map[bool]string{false: "per-update", true: "batched"}[batched], func(t *testing.T) {
			s := startServer(t)
			s.mustRun(t, "session", "create", "--id", "s")
			s.mustRun(t, "register", "s", "x", "integer", "0")
			p := startProxy(t, s.addr)
			args := []string{"watch", "s", "--server", p.addr(), "--max-backoff", "20ms", "--retries", "0"}
			if batched {
				args = append(args, "--batched")
			}
			w := s.start(t, args...)
			w.stdout.waitFor(t, "rev=1 heartbeat")

			c, err := vwclient.Dial(s.addr, vwclient.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
			defer cancel()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			var want []string
			prev, cuts := int64(0), 0
			for i := int64(1); i <= writes; i++ {
				v := i
				if i == writes {
					v = -1 // the last write, which the test waits for
				}
				resp, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x",
					Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: v}}, Source: "stress"})
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, fmt.Sprintf("rev=%d value_change x %d -> %d (source=stress)", resp.GetRevision(), prev, v))
				prev = v
				if rng.IntN(8) == 0 {
					// Cut, and let the watch reconnect before the next
					// cut, so that every cut drops a live connection.
					n := p.forwarded()
					p.cut()
					cuts++
					p.waitForwarded(t, n+1)
				}
			}
			w.stdout.waitFor(t, "-> -1 (source=stress)\n")
			got := changeLines(w.stdout.String())
			if !slices.Equal(got, want) {
				t.Fatalf("after %d cuts the watch printed %d changes, want %d:\n%s", cuts, len(got), len(want), diffLines(got, want))
			}
			t.Logf("%d writes, %d cuts, %d reconnections reported", writes, cuts, strings.Count(w.stderr.String(), "reconnected"))
		})
	}
}

// diffLines shows where two line lists first differ.
func diffLines(got, want []string) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("line %d: got %q, want %q", i, g, w)
		}
	}
	return "equal"
}
