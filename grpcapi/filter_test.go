package grpcapi

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/plugins"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// The filter tests run the real engine, the real plugin host and real
// plugins: the deadband and scale examples, built from source by TestMain
// (as plugins' TestMain does, into $VARWATCH_PLUGIN_DIR/grpcapi or
// .cache/plugins/grpcapi, its own directory so that the two packages'
// tests can build in parallel), and the committed WAT fixtures of
// plugins/testdata.

var (
	pluginDir string
	builtWasm = map[string]string{}
)

func TestMain(m *testing.M) {
	if err := buildTestPlugins(); err != nil {
		fmt.Fprintln(os.Stderr, "building test plugins:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func buildTestPlugins() error {
	base := os.Getenv("VARWATCH_PLUGIN_DIR")
	if base == "" {
		base = filepath.Join("..", ".cache", "plugins")
	}
	pluginDir = filepath.Join(base, "grpcapi")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"deadband", "scale"} {
		src := filepath.Join("..", "plugins", "examples", name)
		// Reading the sources makes go test's cache depend on them.
		files, _ := filepath.Glob(filepath.Join(src, "*.go"))
		for _, f := range files {
			if _, err := os.ReadFile(f); err != nil {
				return err
			}
		}
		out := filepath.Join(pluginDir, name+".wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./"+filepath.ToSlash(src))
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %v\n%s", cmd, err, stderr.String())
		}
		builtWasm[name] = out
	}
	for _, name := range []string{"passthrough", "faulty"} {
		builtWasm[name] = filepath.Join("..", "plugins", "testdata", name+".wasm")
	}
	return nil
}

// testPlugin is a PluginConfig for a built plugin with a calm deadline: a
// loaded machine (-race, parallel builds) must not turn into faults.
func testPlugin(name string, opts ...func(*plugins.PluginConfig)) plugins.PluginConfig {
	pc := plugins.PluginConfig{Name: name, Path: builtWasm[name], Timeout: 10 * time.Second}
	for _, o := range opts {
		o(&pc)
	}
	return pc
}

// newFilterHarness is a harness whose server has a Manager with pcs loaded
// and def as the default chain.
func newFilterHarness(t *testing.T, opts harnessOptions, def []plugins.FilterSpec, pcs ...plugins.PluginConfig) (*harness, *plugins.Manager) {
	t.Helper()
	mgr, err := plugins.New(context.Background(), plugins.Config{Plugins: pcs, Default: def,
		CacheDir: filepath.Join(pluginDir, "wazero-cache"), RestartBackoff: time.Nanosecond, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	opts.filters = mgr
	h := newHarness(t, opts)
	t.Cleanup(func() {
		// Registered after newHarness's cleanup, so it runs first: end the
		// streams, wait for the feeds, then close the plugins.
		h.srv.Shutdown()
		waitFor(t, "watch streams to end", func() bool { return h.srv.ActiveStreams() == 0 })
		fed := make(chan struct{})
		go func() {
			h.srv.WaitFeeds()
			close(fed)
		}()
		select {
		case <-fed:
		case <-time.After(waitTimeout):
			t.Error("chain feed goroutines did not exit")
		}
		_ = mgr.Close(context.Background())
	})
	return h, mgr
}

// filter is a FilterSpec with params given as key, value pairs.
func filter(name string, kv ...string) *pb.FilterSpec {
	f := &pb.FilterSpec{Name: name, Params: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Params[kv[i]] = kv[i+1]
	}
	return f
}

func statsIn(t *testing.T, m *plugins.Manager, name string) uint64 {
	t.Helper()
	for _, s := range m.Stats() {
		if s.Name == name {
			return s.In
		}
	}
	return 0
}

// changes reads the watcher's value changes until one with value sentinel,
// and returns their float values (sentinel excluded).
func (w *watcher) changesUntil(sentinel float64) []float64 {
	w.t.Helper()
	var got []float64
	for {
		u := w.nextData()
		if u.GetUpdateType() != "value_change" {
			w.t.Fatalf("unexpected %v", u)
		}
		f := u.GetVariable().GetValue().GetFloatValue()
		if f == sentinel {
			return got
		}
		got = append(got, f)
	}
}

// deadbandModel is the deadband example's rule: a change passes when it is
// the first the filter sees for the variable or differs from the last one
// passed by at least threshold.
func deadbandModel(values []float64, threshold float64) []float64 {
	var out []float64
	for _, v := range values {
		if len(out) == 0 || abs(v-out[len(out)-1]) >= threshold {
			out = append(out, v)
		}
	}
	return out
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var noisy = []float64{0.1, 0.3, 0.7, 0.9, 1.3, 1.2, 0.5, 0.6, -0.2, 2, 2.4, 2.49, 2.51, 1.9}

func TestFilterDeadbandMatchesModel(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{}, nil, testPlugin("deadband"))
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	filtered := h.watch(&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"},
		Filters: []*pb.FilterSpec{filter("deadband", "threshold", "0.5")}})
	plain := h.watch(&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"}})
	for _, v := range noisy {
		h.set("s", "x", floatV(v))
	}
	h.set("s", "x", floatV(100))
	if got := plain.changesUntil(100); !equalFloats(got, noisy) {
		t.Fatalf("unfiltered got %v, want %v", got, noisy)
	}
	want := deadbandModel(noisy, 0.5)
	if got := filtered.changesUntil(100); !equalFloats(got, want) {
		t.Fatalf("deadband got %v, want %v", got, want)
	}
}

func TestFilterChainComposesInOrder(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{}, nil, testPlugin("deadband"), testPlugin("scale"))
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	// Scale first: deadband compares scaled values against 5.
	scaleThenDeadband := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{
		filter("scale", "a", "10"), filter("deadband", "threshold", "5")}})
	// Deadband first: raw values against 5 (all but the first dropped), then scaled.
	deadbandThenScale := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{
		filter("deadband", "threshold", "5"), filter("scale", "a", "10")}})
	for _, v := range noisy {
		h.set("s", "x", floatV(v))
	}
	h.set("s", "x", floatV(100))
	scaled := make([]float64, len(noisy))
	for i, v := range noisy {
		scaled[i] = v * 10
	}
	if got, want := scaleThenDeadband.changesUntil(1000), deadbandModel(scaled, 5); !equalFloats(got, want) {
		t.Fatalf("scale|deadband got %v, want %v", got, want)
	}
	if got, want := deadbandThenScale.changesUntil(1000), []float64{noisy[0] * 10}; !equalFloats(got, want) {
		t.Fatalf("deadband|scale got %v, want %v", got, want)
	}
}

func TestFilterInitialValues(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{}, nil, testPlugin("scale"))
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(2), nil)
	h.register("s", "name", pb.VariableType_VARIABLE_TYPE_STRING, strV("a"), nil)
	rev := h.set("s", "x", floatV(3)).GetRevision()
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: true,
		Filters: []*pb.FilterSpec{filter("scale", "a", "10", "unit", "dm")}})
	got := map[string]*pb.VariableUpdate{}
	for {
		u := w.nextData()
		if u.GetUpdateType() == "initial_values_complete" {
			if u.GetRevision() != rev {
				t.Fatalf("initial_values_complete at %d, want %d", u.GetRevision(), rev)
			}
			break
		}
		if u.GetUpdateType() != "initial_value" {
			t.Fatalf("unexpected %v", u)
		}
		got[u.GetVariable().GetName()] = u
	}
	if x := got["x"]; x.GetVariable().GetValue().GetFloatValue() != 30 || x.GetUpdateMetadata()["unit"] != "dm" {
		t.Fatalf("initial x = %v, want 30 with unit dm", x)
	}
	if n := got["name"]; n.GetVariable().GetValue().GetStringValue() != "a" {
		t.Fatalf("initial name = %v, want a", n)
	}
	h.set("s", "x", floatV(4))
	if u := w.nextData(); u.GetVariable().GetValue().GetFloatValue() != 40 || u.GetOldValue().GetFloatValue() != 30 {
		t.Fatalf("change = %v, want 30 -> 40", u)
	}
}

func TestFilterSharedChainRunsOncePerUpdate(t *testing.T) {
	h, mgr := newFilterHarness(t, harnessOptions{}, nil, testPlugin("deadband"))
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	req := &pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("deadband", "threshold", "0.5")}}
	a, b := h.watch(req), h.watch(req)
	// Batched, same chain and params: same feed.
	c, err := h.client.WatchVariablesBatched(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Header(); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.ActiveFeeds(); n != 1 {
		t.Fatalf("%d feeds, want 1", n)
	}
	before := statsIn(t, mgr, "deadband")
	for _, v := range noisy {
		h.set("s", "x", floatV(v))
	}
	h.set("s", "x", floatV(100))
	want := deadbandModel(noisy, 0.5)
	for _, w := range []*watcher{a, b} {
		if got := w.changesUntil(100); !equalFloats(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	var got []float64
	for done := false; !done; {
		batch, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range batch.GetUpdates() {
			if u.GetUpdateType() != "value_change" {
				continue
			}
			if f := u.GetVariable().GetValue().GetFloatValue(); f == 100 {
				done = true
			} else {
				got = append(got, f)
			}
		}
	}
	if !equalFloats(got, want) {
		t.Fatalf("batched got %v, want %v", got, want)
	}
	if in := statsIn(t, mgr, "deadband") - before; in != uint64(len(noisy)+1) {
		t.Fatalf("deadband saw %d updates for %d changes and 3 streams, want each once", in, len(noisy)+1)
	}
}

// TestFilterFeedSkipsUnwatched: the feed runs the chain only on the
// variables its members watch, and a member's heartbeat still covers the
// updates it skipped.
func TestFilterFeedSkipsUnwatched(t *testing.T) {
	h, mgr := newFilterHarness(t, harnessOptions{heartbeat: MinHeartbeatInterval}, nil, testPlugin("deadband"))
	h.createSession("s")
	x := h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil).GetId()
	h.register("s", "y", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{x},
		Filters: []*pb.FilterSpec{filter("deadband", "threshold", "0.5")}})
	before := statsIn(t, mgr, "deadband")
	h.set("s", "x", floatV(1))
	var last int64
	for i := range 20 {
		last = h.set("s", "y", floatV(float64(i))).GetRevision()
	}
	// The heartbeat covers the skipped writes; only x's change came.
	if _, _, changes := w.collect(last); len(changes) != 1 || changes[0].name != "x" {
		t.Fatalf("changes %v, want x's only", changes)
	}
	if in := statsIn(t, mgr, "deadband") - before; in != 1 {
		t.Fatalf("deadband saw %d updates, want only the watched one", in)
	}
}

func TestFilterErrors(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{}, nil, testPlugin("deadband"))
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	plain := newHarness(t, harnessOptions{})
	plain.createSession("s")
	start := int64(0)
	for _, tc := range []struct {
		name string
		h    *harness
		req  *pb.WatchVariablesRequest
		want codes.Code
	}{
		{"unknown filter", h, &pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("nope")}}, codes.InvalidArgument},
		{"missing param", h, &pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("deadband")}}, codes.InvalidArgument},
		{"bad param", h, &pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("deadband", "threshold", "-1")}}, codes.InvalidArgument},
		{"host option as param", h, &pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("deadband", "threshold", "1", "timeout", "0")}}, codes.InvalidArgument},
		{"empty name", h, &pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{{}}}, codes.InvalidArgument},
		{"unknown session", h, &pb.WatchVariablesRequest{SessionId: "nope", Filters: []*pb.FilterSpec{filter("deadband", "threshold", "1")}}, codes.NotFound},
		{"unknown variable", h, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"nope"}, Filters: []*pb.FilterSpec{filter("deadband", "threshold", "1")}}, codes.NotFound},
		{"start_revision", h, &pb.WatchVariablesRequest{SessionId: "s", StartRevision: &start, Filters: []*pb.FilterSpec{filter("deadband", "threshold", "1")}}, codes.Unimplemented},
		{"no filters loaded", plain, &pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("deadband", "threshold", "1")}}, codes.FailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.watchErr(tc.req)
			wantCode(t, err, tc.want)
			if strings.Contains(err.Error(), "plugins:") {
				t.Fatalf("message names a Go package: %v", err)
			}
		})
	}
	waitFor(t, "feeds to stop", func() bool { return h.srv.ActiveFeeds() == 0 })
}

func TestFilterOnErrorCloseEndsMembers(t *testing.T) {
	h, mgr := newFilterHarness(t, harnessOptions{}, nil,
		testPlugin("faulty", func(pc *plugins.PluginConfig) { pc.OnError = plugins.OnErrorClose }))
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	req := &pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("faulty")}}
	a, b := h.watch(req), h.watch(req)
	plain := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
	ok := h.set("s", "x", floatV(1)).GetRevision()
	for _, w := range []*watcher{a, b, plain} {
		if u := w.nextData(); u.GetRevision() != ok {
			t.Fatalf("got %v, want the change at %d", u, ok)
		}
	}
	h.set("s", "x", floatV(-1)) // faulty traps on it
	for _, w := range []*watcher{a, b} {
		err := w.end()
		wantCode(t, err, codes.Aborted)
		if msg := status.Convert(err).Message(); !strings.Contains(msg, "filter faulty failed (trap: ") {
			t.Fatalf("status message %q does not name the filter and fault", msg)
		}
		info := errorInfo(t, err)
		if info.GetReason() != ReasonFilterFailed || info.GetMetadata()["resume_revision"] != fmt.Sprint(ok) {
			t.Fatalf("error info %v, want %s resuming from %d", info, ReasonFilterFailed, ok)
		}
	}
	if u := plain.nextData(); u.GetVariable().GetValue().GetFloatValue() != -1 {
		t.Fatalf("unfiltered got %v", u)
	}
	last := h.set("s", "x", floatV(2)).GetRevision()
	if u := plain.nextData(); u.GetRevision() != last {
		t.Fatalf("unfiltered got %v", u)
	}
	// The chain recovers for new streams (the instance is re-created).
	c := h.watch(req)
	next := h.set("s", "x", floatV(3)).GetRevision()
	if u := c.nextData(); u.GetRevision() != next {
		t.Fatalf("new stream got %v", u)
	}
	var st plugins.Stats
	for _, s := range mgr.Stats() {
		if s.Name == "faulty" {
			st = s
		}
	}
	if st.Errors["trap"] != 1 {
		t.Fatalf("faulty stats %+v, want one trap", st)
	}
}

func TestFilterDefaultChain(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{}, []plugins.FilterSpec{{Name: "scale", Params: map[string]string{"a": "2"}}},
		testPlugin("scale"))
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	plain := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
	// The request's chain follows the default one: (2x) then (x+1).
	chained := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("scale", "b", "1")}})
	h.set("s", "x", floatV(5))
	if u := plain.nextData(); u.GetVariable().GetValue().GetFloatValue() != 10 {
		t.Fatalf("default chain: got %v, want 10", u)
	}
	if u := chained.nextData(); u.GetVariable().GetValue().GetFloatValue() != 11 {
		t.Fatalf("default then request chain: got %v, want 11", u)
	}
}

func TestFilterSlowMemberCutOffAlone(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{memberBuffer: 4}, nil, testPlugin("passthrough"))
	h.createSession("s")
	var sets []*pb.SetVariableRequest
	for i := range 10 {
		name := fmt.Sprintf("v%d", i)
		h.register("s", name, pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
		sets = append(sets, &pb.SetVariableRequest{VariableIdentifier: name, Value: floatV(1)})
	}
	req := &pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("passthrough")}}
	all := h.watch(req)
	few := h.watch(&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"v0"}, Filters: req.Filters})
	before := h.set("s", "v0", floatV(0.5)).GetRevision()
	for _, w := range []*watcher{all, few} {
		if u := w.nextData(); u.GetRevision() != before {
			t.Fatalf("got %v", u)
		}
	}
	// One atomic set of 10 changes: over the member buffer of 4 at once.
	resp, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: sets})
	if err != nil {
		t.Fatal(err)
	}
	err = all.end()
	wantCode(t, err, codes.ResourceExhausted)
	if got := errorInfo(t, err).GetMetadata()["resume_revision"]; got != fmt.Sprint(before) {
		t.Fatalf("resume_revision %s, want %d", got, before)
	}
	if u := few.nextData(); u.GetRevision() != resp.GetRevision() || u.GetVariable().GetName() != "v0" {
		t.Fatalf("the other member got %v", u)
	}
}

func TestFilterFeedsStopWithTheirStreams(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{}, nil, testPlugin("passthrough"), testPlugin("deadband"))
	h.createSession("s")
	h.createSession("t")
	var ws []*watcher
	for _, s := range []string{"s", "t"} {
		for _, f := range []*pb.FilterSpec{filter("passthrough"), filter("deadband", "threshold", "1")} {
			ws = append(ws, h.watch(&pb.WatchVariablesRequest{SessionId: s, Filters: []*pb.FilterSpec{f}}))
			ws = append(ws, h.watch(&pb.WatchVariablesRequest{SessionId: s, Filters: []*pb.FilterSpec{f}}))
		}
	}
	if n := h.srv.ActiveFeeds(); n != 4 {
		t.Fatalf("%d feeds, want 4 (2 chains x 2 sessions)", n)
	}
	for _, w := range ws {
		w.cancel()
		<-w.done
	}
	waitFor(t, "feeds to stop", func() bool { return h.srv.ActiveFeeds() == 0 })
	// A session closing ends its filtered streams normally.
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("passthrough")}})
	if _, err := h.client.CleanupSession(h.ctx(), &pb.CleanupSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	if u := w.nextData(); u.GetUpdateType() != "session_closed" {
		t.Fatalf("got %v, want session_closed", u)
	}
	if err := w.end(); err != nil {
		t.Fatalf("stream ended with %v, want OK", err)
	}
	waitFor(t, "feeds to stop", func() bool { return h.srv.ActiveFeeds() == 0 })
}

// TestFilterNoLeaksAndShutdown checks that filtered streams leave no
// goroutine, engine subscription or chain behind, and that Shutdown ends
// them with UNAVAILABLE.
func TestFilterNoLeaksAndShutdown(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{}, nil, testPlugin("passthrough"), testPlugin("deadband"))
	h.createSession("s")
	h.register("s", "a", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	if _, err := h.client.Ping(h.ctx(), &pb.PingRequest{}); err != nil { // connect first
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()
	var ws []*watcher
	for i := range 6 {
		f := filter("passthrough")
		if i%2 == 0 {
			f = filter("deadband", "threshold", fmt.Sprint(i))
		}
		ws = append(ws, h.watch(&pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: i%3 == 0, Filters: []*pb.FilterSpec{f}}))
	}
	h.set("s", "a", floatV(10))
	for _, w := range ws {
		w.nextData()
		w.cancel()
		<-w.done
	}
	waitFor(t, "watch handlers to return", func() bool { return h.srv.ActiveStreams() == 0 })
	waitFor(t, "feeds to stop", func() bool { return h.srv.ActiveFeeds() == 0 })
	for i, sub := range h.backend.subscriptions() {
		select {
		case <-sub.Done():
		case <-time.After(waitTimeout):
			t.Fatalf("subscription %d still running", i)
		}
	}
	waitFor(t, "goroutines to return to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })

	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("passthrough")}})
	rev := h.set("s", "a", floatV(11)).GetRevision()
	if u := w.nextData(); u.GetRevision() != rev {
		t.Fatalf("got %v", u)
	}
	h.srv.Shutdown()
	err := w.end()
	wantCode(t, err, codes.Unavailable)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "include_initial_values") {
		t.Fatalf("shutdown message %q does not say how to start over", msg)
	}
	if got := errorInfo(t, err).GetMetadata()["resume_revision"]; got != fmt.Sprint(rev) {
		t.Fatalf("resume_revision %s, want %d", got, rev)
	}
}

// TestFilterCoalesce checks that a filtered watch may coalesce.
func TestFilterCoalesce(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{}, nil, testPlugin("scale"))
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Coalesce: true, Filters: []*pb.FilterSpec{filter("scale", "a", "2")}})
	h.set("s", "x", floatV(1))
	if u := w.nextData(); u.GetVariable().GetValue().GetFloatValue() != 2 {
		t.Fatalf("got %v, want 2", u)
	}
}

// TestFilterReplacedUpdatesAreEncodedAfresh: a change watched by a plain
// stream and through a replacing filter is one published event with one
// shared encoding (engine.Memo); the filtered copy must not reuse it. The
// plain stream reads each change first, so its encoding is in the memo
// before the filtered stream sends, whichever order the goroutines run.
func TestFilterReplacedUpdatesAreEncodedAfresh(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{}, nil, testPlugin("scale"))
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	plain := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
	scaled := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("scale", "a", "10")}})
	for i := 1; i <= 50; i++ {
		h.set("s", "x", floatV(float64(i)))
		if got := plain.nextData().GetVariable().GetValue().GetFloatValue(); got != float64(i) {
			t.Fatalf("plain stream: %v, want %d", got, i)
		}
		if got := scaled.nextData().GetVariable().GetValue().GetFloatValue(); got != float64(10*i) {
			t.Fatalf("scaled stream: %v, want %d", got, 10*i)
		}
	}
}
