package engine

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The watch guarantee under concurrency: writers hammer the session (single
// sets, atomic and non-atomic multi-sets, late registrations) while
// watchers start at random moments. Each watcher's stream must equal what an
// independent model, built only from the writers' acknowledged results,
// predicts: the initial values at the snapshot revision, then every later
// change to a watched variable exactly once, in revision order.
//
// Reproduce a failure with VARWATCH_SEED=<seed from the log>.

// modelEntry is one acknowledged change, as the writer saw it.
type modelEntry struct {
	rev   int64
	reg   bool // registration (else a set)
	name  string
	value int64
}

// model is the history rebuilt from acknowledgements, sorted by revision
// (and by position within an atomic set).
type model struct {
	entries []modelEntry
	initial map[string]int64 // values registered before the run
}

type seenEvent struct {
	typ   EventType
	rev   int64
	name  string
	value int64
	old   int64
}

func (e seenEvent) String() string {
	return fmt.Sprintf("%s@%d %s=%d (old %d)", e.typ, e.rev, e.name, e.value, e.old)
}

type stressWatcher struct {
	names   []string // watched by name, or
	pattern string   // watched by glob
	snap    int64
	events  []seenEvent
	err     error
}

func stressSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("VARWATCH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set VARWATCH_SEED to reproduce)", seed)
	return seed
}

func TestStressWatchersSeeEveryChangeOnceInOrder(t *testing.T) {
	const (
		baseVars      = 8
		writers       = 4
		opsPerWriter  = 1500
		lateVars      = 6
		watcherCount  = 24
		startSpreadUS = 30000
	)
	seed := stressSeed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "stress")
	m := &model{initial: map[string]int64{}}
	for i := range baseVars {
		name := fmt.Sprintf("v%d", i)
		mustRegister(t, e, "stress", name, Integer(int64(i)))
		m.initial[name] = int64(i)
	}

	var (
		logMu   sync.Mutex
		acked   []modelEntry
		writing sync.WaitGroup
		done    atomic.Bool
	)
	record := func(entries ...modelEntry) {
		logMu.Lock()
		acked = append(acked, entries...)
		logMu.Unlock()
	}

	for w := range writers {
		writing.Add(1)
		go func() {
			defer writing.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for op := range opsPerWriter {
				value := int64(w+1)*1_000_000 + int64(op)
				switch k := rng.IntN(10); {
				case k < 6: // single set
					name := fmt.Sprintf("v%d", rng.IntN(baseVars))
					res, err := e.Set(ctx, SetRequest{Session: "stress", Variable: name, Value: Integer(value)})
					if err != nil {
						t.Errorf("set: %v", err)
						return
					}
					record(modelEntry{rev: res.Revision, name: name, value: value})
				default: // multi-set of distinct variables, atomic or not
					perm := rng.Perm(baseVars)[:2+rng.IntN(3)]
					sets := make([]SetRequest, len(perm))
					for i, p := range perm {
						sets[i] = SetRequest{Variable: fmt.Sprintf("v%d", p), Value: Integer(value*10 + int64(i))}
					}
					res, err := e.SetMany(ctx, SetManyRequest{Session: "stress", Sets: sets, Atomic: k < 8})
					if err != nil {
						t.Errorf("set many: %v", err)
						return
					}
					for i, it := range res.Items {
						if it.Err != nil {
							t.Errorf("set many item: %v", it.Err)
							return
						}
						record(modelEntry{rev: it.Revision, name: sets[i].Variable, value: sets[i].Value.Integer()})
					}
				}
			}
		}()
	}
	// A registrar adds variables mid-run, then writes them, so pattern
	// watchers see variable_registered at the right place.
	writing.Add(1)
	go func() {
		defer writing.Done()
		rng := rand.New(rand.NewPCG(seed, 99))
		for i := range lateVars {
			time.Sleep(time.Duration(rng.IntN(startSpreadUS/lateVars)) * time.Microsecond)
			name := fmt.Sprintf("late_%d", i)
			res, err := e.Register(ctx, RegisterRequest{Session: "stress", Name: name, Type: TypeInteger, Value: Integer(-int64(i))})
			if err != nil {
				t.Errorf("register: %v", err)
				return
			}
			record(modelEntry{rev: res.Revision, reg: true, name: name, value: -int64(i)})
			for j := range 20 {
				v := int64(-(i+1)*1000 - j)
				res, err := e.Set(ctx, SetRequest{Session: "stress", Variable: name, Value: Integer(v)})
				if err != nil {
					t.Errorf("set late: %v", err)
					return
				}
				record(modelEntry{rev: res.Revision, name: name, value: v})
			}
		}
	}()

	patterns := []string{"*", "v?", "late_*", "v[0-3]", "*_[135]"}
	watchers := make([]*stressWatcher, watcherCount)
	var watching sync.WaitGroup
	var finalRev atomic.Int64
	rng := rand.New(rand.NewPCG(seed, 1234))
	for i := range watchers {
		w := &stressWatcher{}
		if rng.IntN(2) == 0 {
			w.pattern = patterns[rng.IntN(len(patterns))]
		} else {
			for _, p := range rng.Perm(baseVars)[:1+rng.IntN(4)] {
				w.names = append(w.names, fmt.Sprintf("v%d", p))
			}
		}
		watchers[i] = w
		delay := time.Duration(rng.IntN(startSpreadUS)) * time.Microsecond
		watching.Add(1)
		go func() {
			defer watching.Done()
			time.Sleep(delay)
			w.err = w.run(ctx, e, &done, &finalRev)
		}()
	}

	writing.Wait()
	res, err := e.List(ctx, "stress", "")
	if err != nil {
		t.Fatal(err)
	}
	finalRev.Store(res.Revision)
	done.Store(true)
	watching.Wait()
	if t.Failed() {
		return
	}

	slices.SortStableFunc(acked, func(a, b modelEntry) int { return int(a.rev - b.rev) })
	m.entries = acked
	checkRevisionsDense(t, m, res.Revision)
	for i, w := range watchers {
		if w.err != nil {
			t.Errorf("watcher %d: %v", i, w.err)
			continue
		}
		want := w.expected(m)
		if !slices.Equal(w.events, want) {
			t.Errorf("watcher %d (names %v, pattern %q, snapshot %d): stream differs from the model\n%s",
				i, w.names, w.pattern, w.snap, firstDiff(w.events, want))
		}
	}
}

// run watches until the writers are done and the heartbeat revision shows
// the stream is complete up to the final revision.
func (w *stressWatcher) run(ctx context.Context, e *Engine, done *atomic.Bool, finalRev *atomic.Int64) error {
	sub, err := e.Watch(ctx, WatchRequest{Session: "stress", Variables: w.names, Pattern: w.pattern, IncludeInitialValues: true})
	if err != nil {
		return err
	}
	defer sub.Close()
	w.snap = sub.SnapshotRevision()
	var evs []Event
	for {
		evs, err = sub.Drain(evs)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			se := seenEvent{typ: ev.Type, rev: ev.Revision}
			if ev.Variable != nil {
				se.name, se.value = ev.Variable.Name, ev.Variable.Value.Integer()
			}
			se.old = ev.OldValue.Integer()
			w.events = append(w.events, se)
		}
		if done.Load() && sub.HeartbeatRevision() >= finalRev.Load() {
			return nil
		}
		select {
		case <-sub.Ready():
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *stressWatcher) watches(name string) bool {
	if w.pattern != "" {
		g, _ := CompileGlob(w.pattern)
		return g.Match(name)
	}
	return slices.Contains(w.names, name)
}

// expected is the stream the model predicts for this watcher, computed in
// one pass over the history.
func (w *stressWatcher) expected(m *model) []seenEvent {
	cur := maps.Clone(m.initial)
	i := 0
	for ; i < len(m.entries) && m.entries[i].rev <= w.snap; i++ {
		cur[m.entries[i].name] = m.entries[i].value
	}
	names := w.names
	if w.pattern != "" {
		names = slices.Sorted(maps.Keys(cur))
	}
	var out []seenEvent
	for _, name := range names {
		if w.watches(name) {
			out = append(out, seenEvent{typ: EventInitialValue, rev: w.snap, name: name, value: cur[name]})
		}
	}
	out = append(out, seenEvent{typ: EventInitialValuesComplete, rev: w.snap})
	for _, e := range m.entries[i:] {
		old := cur[e.name]
		cur[e.name] = e.value
		switch {
		case !w.watches(e.name):
		case e.reg:
			out = append(out, seenEvent{typ: EventVariableRegistered, rev: e.rev, name: e.name, value: e.value})
		default:
			out = append(out, seenEvent{typ: EventValueChange, rev: e.rev, name: e.name, value: e.value, old: old})
		}
	}
	return out
}

// checkRevisionsDense: every revision from the first write to the last
// was acknowledged to someone, so the model has no holes to hide a bug in.
func checkRevisionsDense(t *testing.T, m *model, last int64) {
	t.Helper()
	next := m.entries[0].rev
	for _, e := range m.entries {
		if e.rev != next && e.rev != next-1 {
			t.Fatalf("model has a gap: revision %d after %d", e.rev, next-1)
		}
		next = e.rev + 1
	}
	if next-1 != last {
		t.Fatalf("model ends at revision %d, session at %d", next-1, last)
	}
}

func firstDiff(got, want []seenEvent) string {
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i].String()
		}
		if i < len(want) {
			w = want[i].String()
		}
		if g != w {
			return fmt.Sprintf("first difference at event %d of %d/%d: got %q, want %q", i, len(got), len(want), g, w)
		}
	}
	return "equal"
}

func mustCreate(t *testing.T, e *Engine, id string) {
	t.Helper()
	if _, _, err := e.CreateSession(context.Background(), CreateSessionRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
}

func mustRegister(t *testing.T, e *Engine, session, name string, v Value) *Variable {
	t.Helper()
	res, err := e.Register(context.Background(), RegisterRequest{Session: session, Name: name, Type: v.Type(), Value: v})
	if err != nil {
		t.Fatal(err)
	}
	return res.Variable
}
