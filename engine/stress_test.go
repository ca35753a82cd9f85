package engine

import (
	"context"
	"errors"
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
	count int64 // coalesced changes
	from  int64 // first coalesced revision
}

func (e seenEvent) String() string {
	return fmt.Sprintf("%s@%d %s=%d (old %d, coalesced %d from %d)", e.typ, e.rev, e.name, e.value, e.old, e.count, e.from)
}

// watcher modes: how a watcher consumes its stream.
const (
	modePlain    = iota // reads everything on one subscription
	modeResume          // disconnects at random and resumes from its last revision
	modeTiny            // tiny buffer, slow reader: cut off, then resumes
	modeCoalesce        // slow reader on a coalescing subscription
	modeCount
)

type stressWatcher struct {
	names    []string // watched by name, or
	pattern  string   // watched by glob
	mode     int
	segments []*segment
	err      error
}

// segment is what one subscription delivered: a snapshot (initial values
// at start) or a resume (changes after start).
type segment struct {
	resume bool
	start  int64
	events []seenEvent
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
	t.Run("default history", func(t *testing.T) { stressWatch(t, Config{}) })
	// A short history: slow or resuming watchers find their revision
	// compacted and must re-snapshot.
	t.Run("short history", func(t *testing.T) { stressWatch(t, Config{HistoryRevisions: 300}) })
	// A tiny feed: chunks of a few events, dropped and spilled all the
	// time, under watchers that drain late.
	t.Run("tiny feed", func(t *testing.T) {
		tinyFeed(t)
		stressWatch(t, Config{})
	})
}

// tinyFeed makes the sessions' feeds tiny until t ends: chunks of 1 to 4
// events, spilling a subscription 8 events behind.
func tinyFeed(t *testing.T) {
	oldMin, oldMax, oldSpill := minChunk, maxChunk, feedSpill
	minChunk, maxChunk, feedSpill = 1, 4, 8
	t.Cleanup(func() { minChunk, maxChunk, feedSpill = oldMin, oldMax, oldSpill })
}

func stressWatch(t *testing.T, cfg Config) {
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

	e := New(cfg)
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
		w := &stressWatcher{mode: i % modeCount}
		if rng.IntN(2) == 0 {
			w.pattern = patterns[rng.IntN(len(patterns))]
		} else {
			for _, p := range rng.Perm(baseVars)[:1+rng.IntN(4)] {
				w.names = append(w.names, fmt.Sprintf("v%d", p))
			}
		}
		watchers[i] = w
		delay := time.Duration(rng.IntN(startSpreadUS)) * time.Microsecond
		wrng := rand.New(rand.NewPCG(seed, uint64(1000+i)))
		watching.Add(1)
		go func() {
			defer watching.Done()
			time.Sleep(delay)
			w.err = w.run(ctx, e, wrng, &done, &finalRev)
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
	var resumes, snapshots, merged int
	for _, w := range watchers {
		for i, seg := range w.segments {
			if i > 0 && seg.resume {
				resumes++
			} else if i > 0 {
				snapshots++
			}
			for _, ev := range seg.events {
				if ev.count > 1 {
					merged++
				}
			}
		}
	}
	t.Logf("%d revisions; %d resumes, %d re-snapshots after compaction, %d coalesced updates", res.Revision, resumes, snapshots, merged)
	for i, w := range watchers {
		if w.err != nil {
			t.Errorf("watcher %d: %v", i, w.err)
			continue
		}
		if err := w.check(m); err != nil {
			t.Errorf("watcher %d (mode %d, names %v, pattern %q, %d segments): %v", i, w.mode, w.names, w.pattern, len(w.segments), err)
		}
	}
}

// check compares each segment with the model: every segment but the last
// is a prefix of what the model predicts from its start (the watcher left
// early), the last one is all of it, and each resume starts where the
// previous segment's deliveries ended.
func (w *stressWatcher) check(m *model) error {
	for i, seg := range w.segments {
		want := w.expected(m, seg)
		got := seg.events
		if w.mode == modeCoalesce {
			if err := checkCoalesced(got, want); err != nil {
				return fmt.Errorf("segment %d: %w", i, err)
			}
			continue
		}
		last := i == len(w.segments)-1
		if len(got) > len(want) || (last && len(got) != len(want)) || !slices.Equal(got, want[:len(got)]) {
			return fmt.Errorf("segment %d (resume %v from %d): stream differs from the model\n%s", i, seg.resume, seg.start, firstDiff(got, want))
		}
	}
	return nil
}

// checkCoalesced checks a coalescing stream against the uncoalesced one the
// model predicts: the same initial values, revisions in order,
// and each change standing for exactly the next Coalesced changes of its
// variable (from CoalescedFrom to its own revision), with the value after
// the last and the old value before the first; nothing left over.
func checkCoalesced(got, want []seenEvent) error {
	pending := map[string][]seenEvent{} // model changes not yet accounted for, per variable
	var wantCtl []seenEvent             // everything but value changes, in order
	for _, ev := range want {
		if ev.typ == EventValueChange {
			pending[ev.name] = append(pending[ev.name], ev)
		} else {
			wantCtl = append(wantCtl, ev)
		}
	}
	var gotCtl []seenEvent
	var lastRev int64
	for _, ev := range got {
		if ev.typ != EventValueChange {
			gotCtl = append(gotCtl, ev)
			continue
		}
		// Atomic sets share a revision across variables; per variable the
		// revisions strictly increase, which matching the model checks.
		if ev.rev < lastRev {
			return fmt.Errorf("revision %d after %d: out of order", ev.rev, lastRev)
		}
		lastRev = ev.rev
		n := max(ev.count, 1)
		changes := pending[ev.name]
		if int64(len(changes)) < n {
			return fmt.Errorf("%v stands for %d changes, the model has %d left", ev, n, len(changes))
		}
		first, lastCh := changes[0], changes[n-1]
		from := ev.rev
		if ev.count > 1 {
			from = ev.from
		}
		if from != first.rev || ev.rev != lastCh.rev || ev.value != lastCh.value || ev.old != first.old {
			return fmt.Errorf("%v does not match the model's changes %v .. %v", ev, first, lastCh)
		}
		pending[ev.name] = changes[n:]
	}
	for name, left := range pending {
		if len(left) > 0 {
			return fmt.Errorf("%d changes of %s never delivered, first %v", len(left), name, left[0])
		}
	}
	if !slices.Equal(gotCtl, wantCtl) {
		return fmt.Errorf("non-change events differ\n%s", firstDiff(gotCtl, wantCtl))
	}
	return nil
}

// run watches until the writers are done and the heartbeat revision shows
// the stream is complete up to the final revision. It opens a new
// subscription whenever its mode drops the current one: resuming from the
// last revision it received, or re-snapshotting if that was compacted.
func (w *stressWatcher) run(ctx context.Context, e *Engine, rng *rand.Rand, done *atomic.Bool, finalRev *atomic.Int64) error {
	next := &segment{}
	for {
		req := WatchRequest{Session: "stress", Variables: w.names, Pattern: w.pattern,
			IncludeInitialValues: !next.resume, Resume: next.resume, StartRevision: next.start,
			Coalesce: w.mode == modeCoalesce}
		if w.mode == modeTiny {
			req.Buffer = 16
		}
		sub, err := e.Watch(ctx, req)
		if errors.Is(err, ErrCompacted) {
			next = &segment{} // too far behind: snapshot again
			continue
		}
		if err != nil {
			return err
		}
		seg := next
		if !seg.resume {
			seg.start = sub.SnapshotRevision()
		}
		w.segments = append(w.segments, seg)
		last := seg.start
		finished, err := w.consume(ctx, sub, seg, rng, &last, done, finalRev)
		sub.Close()
		switch {
		case finished:
			return nil
		case err == nil, errors.Is(err, ErrSlowConsumer):
			next = &segment{resume: true, start: last}
		default:
			return err
		}
	}
}

// consume records sub's events into seg. It returns finished when the
// stream is complete, or nil when the mode chose to disconnect.
func (w *stressWatcher) consume(ctx context.Context, sub *Subscription, seg *segment, rng *rand.Rand,
	last *int64, done *atomic.Bool, finalRev *atomic.Int64) (bool, error) {
	var evs []Event
	for {
		var err error
		evs, err = sub.Drain(evs)
		if err != nil {
			return false, err
		}
		for _, ev := range evs {
			se := seenEvent{typ: ev.Type, rev: ev.Revision, count: ev.Coalesced, from: ev.CoalescedFrom}
			if ev.Variable != nil {
				se.name, se.value = ev.Variable.Name, ev.Variable.Value.Integer()
			}
			se.old = ev.OldValue.Integer()
			seg.events = append(seg.events, se)
			*last = max(*last, ev.Revision)
		}
		hb := sub.HeartbeatRevision()
		if done.Load() && hb >= finalRev.Load() {
			return true, nil
		}
		switch w.mode {
		case modeResume:
			if rng.IntN(40) == 0 {
				if rng.IntN(2) == 0 {
					*last = hb // the heartbeat revision is a safe place to resume too
				}
				if rng.IntN(4) == 0 { // stay away: the history may move on
					time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
				}
				return false, nil
			}
		case modeTiny, modeCoalesce:
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
		}
		select {
		case <-sub.Ready():
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return false, ctx.Err()
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

// expected is the stream the model predicts for a segment, computed in one
// pass over the history.
func (w *stressWatcher) expected(m *model, seg *segment) []seenEvent {
	cur := maps.Clone(m.initial)
	i := 0
	for ; i < len(m.entries) && m.entries[i].rev <= seg.start; i++ {
		cur[m.entries[i].name] = m.entries[i].value
	}
	names := w.names
	if w.pattern != "" {
		names = slices.Sorted(maps.Keys(cur))
	}
	var out []seenEvent
	if !seg.resume {
		for _, name := range names {
			if w.watches(name) {
				out = append(out, seenEvent{typ: EventInitialValue, rev: seg.start, name: name, value: cur[name]})
			}
		}
		out = append(out, seenEvent{typ: EventInitialValuesComplete, rev: seg.start})
	}
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
