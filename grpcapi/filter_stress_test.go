package grpcapi

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/varwatch/varwatch/plugins"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// change is one value change as a stream delivered it.
type change struct {
	rev   int64
	name  string
	value float64
}

// collect reads w until a heartbeat at or after rev and returns the
// snapshot revision (initial_values_complete, else the greeting
// heartbeat), the initial values and the value changes.
func (w *watcher) collect(rev int64) (snap int64, initial map[string]float64, changes []change) {
	w.t.Helper()
	snap = -1
	initial = map[string]float64{}
	for {
		u := w.next()
		switch u.GetUpdateType() {
		case "initial_value":
			initial[u.GetVariable().GetName()] = u.GetVariable().GetValue().GetFloatValue()
		case "initial_values_complete":
			snap = u.GetRevision()
		case "heartbeat":
			if snap < 0 {
				snap = u.GetRevision()
			}
			if u.GetRevision() >= rev {
				return snap, initial, changes
			}
		case "value_change":
			changes = append(changes, change{u.GetRevision(), u.GetVariable().GetName(), u.GetVariable().GetValue().GetFloatValue()})
		default:
			w.t.Fatalf("unexpected %v", u)
		}
	}
}

// TestFilterRandomized runs writers and filtered watchers that join at
// random moments, sharing chains or not, and checks every stream against a
// model built from an unfiltered stream of the whole session:
//   - pass-through chain: exactly the unfiltered stream of its variables
//     after its snapshot, initial values equal to the state at the snapshot;
//   - deadband: the deadband rule applied, per variable, to the whole
//     unfiltered stream since the chain started (an anchor stream keeps the
//     shared chain, and so its state, alive from before the first write),
//     then cut to the stream's variables after its snapshot.
func TestFilterRandomized(t *testing.T) {
	const (
		writers   = 3
		perWriter = 60
		joiners   = 8
		threshold = 0.3
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	h, _ := newFilterHarness(t, harnessOptions{heartbeat: MinHeartbeatInterval}, nil,
		testPlugin("deadband"), testPlugin("passthrough"))
	h.createSession("s")
	names := []string{"a", "b", "c", "d"}
	for _, n := range names {
		h.register("s", n, pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	}
	deadband := []*pb.FilterSpec{filter("deadband", "threshold", fmt.Sprint(threshold))}
	passthrough := []*pb.FilterSpec{filter("passthrough")}
	truth := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
	anchor := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Filters: deadband})

	type joined struct {
		w       *watcher
		dead    bool
		vars    []string // nil: all
		initial bool
	}
	var written atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(i+1)))
			for range perWriter {
				v := func() *pb.Value { return floatV(math.Round(r.Float64()*20) / 10) }
				var err error
				if r.IntN(5) == 0 {
					_, err = h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
						{VariableIdentifier: names[r.IntN(2)], Value: v()}, {VariableIdentifier: names[2+r.IntN(2)], Value: v()}}})
				} else {
					_, err = h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: names[r.IntN(len(names))], Value: v()})
				}
				if err != nil {
					errs <- err
					return
				}
				written.Add(1)
			}
		}()
	}
	var js []joined
	for range joiners {
		at := rng.Int64N(writers * perWriter)
		waitFor(t, "writes to progress", func() bool { return written.Load() >= at || len(errs) > 0 })
		j := joined{dead: rng.IntN(2) == 0, initial: rng.IntN(2) == 0}
		req := &pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: j.initial, Filters: passthrough}
		if j.dead {
			req.Filters = deadband
		}
		switch rng.IntN(3) {
		case 0:
			j.vars = []string{names[rng.IntN(len(names))], names[rng.IntN(len(names))]}
			req.VariableIdentifiers = j.vars
		case 1:
			req.Pattern = "[ab]"
			j.vars = []string{"a", "b"}
		}
		j.w = h.watch(req)
		js = append(js, j)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	info, err := h.client.GetSession(h.ctx(), &pb.GetSessionRequest{SessionId: "s"})
	if err != nil {
		t.Fatal(err)
	}
	last := info.GetSession().GetRevision()

	_, _, all := truth.collect(last)
	// The deadband model over the whole session since before the first write.
	passed := map[int]bool{}
	lastPassed := map[string]float64{}
	for i, c := range all {
		if p, ok := lastPassed[c.name]; !ok || math.Abs(c.value-p) >= threshold {
			lastPassed[c.name] = c.value
			passed[i] = true
		}
	}
	expect := func(snap int64, vars []string, dead bool) []change {
		var out []change
		for i, c := range all {
			if c.rev > snap && (vars == nil || slices.Contains(vars, c.name)) && (!dead || passed[i]) {
				out = append(out, c)
			}
		}
		return out
	}
	stateAt := func(snap int64, vars []string) map[string]float64 {
		st := map[string]float64{}
		for _, n := range names {
			if vars == nil || slices.Contains(vars, n) {
				st[n] = 0
			}
		}
		for _, c := range all {
			if c.rev <= snap {
				if _, ok := st[c.name]; ok {
					st[c.name] = c.value
				}
			}
		}
		return st
	}
	if snap, _, got := anchor.collect(last); !slices.Equal(got, expect(snap, nil, true)) {
		t.Fatalf("anchor got %v\nwant %v", got, expect(snap, nil, true))
	}
	for i, j := range js {
		snap, initial, got := j.w.collect(last)
		if want := expect(snap, j.vars, j.dead); !slices.Equal(got, want) {
			t.Fatalf("joiner %d (deadband %v, vars %v, snapshot %d) got %v\nwant %v", i, j.dead, j.vars, snap, got, want)
		}
		if j.initial {
			if want := stateAt(snap, j.vars); fmt.Sprint(initial) != fmt.Sprint(want) {
				t.Fatalf("joiner %d initial values %v, want %v", i, initial, want)
			}
		}
	}
}

// TestFilterReloadWhileStreaming reloads the plugins while a writer writes
// and filtered streams read: the streams lose nothing and see nothing
// twice (pass-through chain against an unfiltered stream).
func TestFilterReloadWhileStreaming(t *testing.T) {
	pcs := []plugins.PluginConfig{testPlugin("passthrough")}
	h, mgr := newFilterHarness(t, harnessOptions{heartbeat: MinHeartbeatInterval}, nil, pcs...)
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	truth := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
	req := &pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("passthrough")}}
	a, b := h.watch(req), h.watch(req)
	const writes = 200
	var written atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := range writes {
			if _, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: floatV(float64(i + 1))}); err != nil {
				done <- err
				return
			}
			written.Add(1)
		}
		done <- nil
	}()
	for range 3 {
		at := written.Load() + writes/5
		waitFor(t, "writes to progress", func() bool { return written.Load() >= min(at, writes) })
		if err := mgr.Reload(context.Background(), plugins.Config{Plugins: pcs}); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	last := int64(writes + 1) // registration, then the writes
	_, _, want := truth.collect(last)
	for _, w := range []*watcher{a, b} {
		if _, _, got := w.collect(last); !slices.Equal(got, want) {
			t.Fatalf("filtered stream across reloads got %v\nwant %v", got, want)
		}
	}
}
