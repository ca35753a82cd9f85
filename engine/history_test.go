package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestResumeReplaysExactlyTheMissedChanges(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Integer(0)) // rev 1
	for i := 1; i <= 5; i++ {                // revs 2..6
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"x"}, Resume: true, StartRevision: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(6)}); err != nil { // rev 7, live
		t.Fatal(err)
	}
	for want := int64(4); want <= 7; want++ {
		ev := nextEvent(t, sub)
		if ev.Revision != want || ev.Variable.Value.Integer() != want-1 || ev.OldValue.Integer() != want-2 {
			t.Fatalf("got %v@%d %v (old %v), want revision %d", ev.Type, ev.Revision, ev.Variable.Value, ev.OldValue, want)
		}
	}
	// Resuming from 0 replays the registration too, for pattern watches.
	all, err := e.Watch(ctx, WatchRequest{Session: "s", Pattern: "*", Resume: true, StartRevision: 0})
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, all); ev.Type != EventVariableRegistered || ev.Revision != 1 {
		t.Fatalf("got %v@%d, want the registration", ev.Type, ev.Revision)
	}
}

func TestResumeBadRequests(t *testing.T) {
	ctx := context.Background()
	e := New(Config{HistoryRevisions: 3})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Integer(0))
	for i := range 9 { // revisions 2..10; the history keeps 8..10
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.Watch(ctx, WatchRequest{Session: "s", Resume: true, StartRevision: 6})
	var ce *CompactedError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) || ce.Compacted != 7 || !strings.Contains(err.Error(), "resume from 7") {
		t.Fatalf("compacted: %v", err)
	}
	if _, err := e.Watch(ctx, WatchRequest{Session: "s", Resume: true, StartRevision: 7}); err != nil {
		t.Fatalf("oldest resumable revision: %v", err)
	}
	for name, req := range map[string]WatchRequest{
		"ahead":            {Session: "s", Resume: true, StartRevision: 11},
		"negative":         {Session: "s", Resume: true, StartRevision: -1},
		"with initial too": {Session: "s", Resume: true, StartRevision: 9, IncludeInitialValues: true},
	} {
		if _, err := e.Watch(ctx, req); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestHistoryBounds(t *testing.T) {
	ctx := context.Background()
	big := String(strings.Repeat("x", 10_000))
	t.Run("bytes per session", func(t *testing.T) {
		e := New(Config{HistoryBytes: 50_000})
		defer e.Close()
		mustCreate(t, e, "s")
		mustRegister(t, e, "s", "x", String(""))
		for range 20 {
			if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: big}); err != nil {
				t.Fatal(err)
			}
		}
		inLoop(t, e, func(st *state) {
			h := &st.sessions["s"].hist
			if h.bytes > 50_000 || h.len() < 2 || h.compacted == 0 {
				t.Errorf("history: %d bytes, %d revisions, compacted %d", h.bytes, h.len(), h.compacted)
			}
		})
	})
	t.Run("server-wide bytes take from the largest", func(t *testing.T) {
		e := New(Config{HistoryTotalBytes: 200_000})
		defer e.Close()
		mustCreate(t, e, "quiet")
		mustRegister(t, e, "quiet", "x", Integer(1))
		mustCreate(t, e, "hot")
		mustRegister(t, e, "hot", "x", String(""))
		for range 100 {
			if _, err := e.Set(ctx, SetRequest{Session: "hot", Variable: "x", Value: big}); err != nil {
				t.Fatal(err)
			}
		}
		inLoop(t, e, func(st *state) {
			if st.histBytes > 200_000 {
				t.Errorf("total history %d bytes over the bound", st.histBytes)
			}
			if q := st.sessions["quiet"].hist; q.compacted != 0 || q.len() != 1 {
				t.Errorf("the quiet session lost history: %+v", q)
			}
		})
		if _, err := e.CloseSession(ctx, "hot"); err != nil {
			t.Fatal(err)
		}
		inLoop(t, e, func(st *state) {
			if want := st.sessions["quiet"].hist.bytes; st.histBytes != want {
				t.Errorf("total %d after closing hot, want %d", st.histBytes, want)
			}
		})
	})
}

func TestCoalescingMergesAndStaysBounded(t *testing.T) {
	ctx := context.Background()
	e := New(Config{SubscriptionBuffer: 8})
	defer e.Close()
	mustCreate(t, e, "s")
	const vars, writes = 4, 5000
	for i := range vars {
		mustRegister(t, e, "s", fmt.Sprintf("v%d", i), Integer(0))
	}
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Coalesce: true})
	if err != nil {
		t.Fatal(err)
	}
	maxPending := 0
	for i := 1; i <= writes; i++ {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: fmt.Sprintf("v%d", i%vars), Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
		sub.mu.Lock()
		maxPending = max(maxPending, len(sub.pending))
		sub.mu.Unlock()
	}
	// Never cut off despite a buffer of 8, and memory bounded by the
	// variables (tombstones included), not by the writes.
	if maxPending > 2*vars+64 {
		t.Errorf("pending grew to %d for %d variables", maxPending, vars)
	}
	evs, err := sub.Drain(nil)
	if err != nil || len(evs) != vars {
		t.Fatalf("drained %d events (%v), want one per variable", len(evs), err)
	}
	var total int64
	for i, ev := range evs {
		total += ev.Coalesced
		if i > 0 && ev.Revision <= evs[i-1].Revision {
			t.Errorf("revisions out of order: %d after %d", ev.Revision, evs[i-1].Revision)
		}
		// Variable k got the writes i = k, k+vars, ... (i > 0) at revision
		// vars+i: the latest is the last of them, the old value the
		// registered 0, and the merge starts at the first.
		k := int64(slices.Index([]string{"v0", "v1", "v2", "v3"}, ev.Variable.Name))
		first := k
		if first == 0 {
			first = vars
		}
		latest := writes - (writes-k)%vars
		if got := ev.Variable.Value.Integer(); got != latest || ev.Revision != vars+latest ||
			ev.OldValue.Integer() != 0 || ev.CoalescedFrom != vars+first {
			t.Errorf("%s: value %d at %d from %d (old %v), want %d at %d from %d (old 0)", ev.Variable.Name,
				got, ev.Revision, ev.CoalescedFrom, ev.OldValue, latest, vars+latest, vars+first)
		}
	}
	if total != writes {
		t.Errorf("coalesced counts add up to %d, want %d writes", total, writes)
	}
}

// A subscriber that never reads must not slow writers: compare write
// throughput with and without one, in the same run, as a ratio.
func TestStuckSubscriberDoesNotSlowWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("measures throughput")
	}
	const writes = 20000
	measure := func(stuck *WatchRequest) time.Duration {
		ctx := context.Background()
		e := New(Config{})
		defer e.Close()
		mustCreate(t, e, "s")
		mustRegister(t, e, "s", "x", Integer(0))
		if stuck != nil {
			req := *stuck
			req.Session = "s"
			if _, err := e.Watch(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		for i := range writes {
			if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(start)
	}
	for name, stuck := range map[string]*WatchRequest{
		"cut off":    {Buffer: 1024},
		"coalescing": {Coalesce: true},
	} {
		t.Run(name, func(t *testing.T) {
			// Alternate the two runs and keep the best of each, which
			// filters out the noise of a shared machine.
			best := [2]time.Duration{time.Hour, time.Hour}
			for range 3 {
				best[0] = min(best[0], measure(nil))
				best[1] = min(best[1], measure(stuck))
			}
			ratio := float64(best[0]) / float64(best[1])
			t.Logf("throughput with a stuck %s subscriber / without: %.2f", name, ratio)
			// Blocking on the stuck subscriber would stall writers
			// outright; what remains is the cost of one more watcher.
			if ratio < 0.4 {
				t.Errorf("a stuck subscriber halved write throughput (ratio %.2f)", ratio)
			}
		})
	}
}

// The history keeps a change in less room than an Event (histEvent): a
// watch resumed from it must still get every event exactly as the live
// watch got it, field by field, whatever made it (a registration, a set
// with a source and metadata, an upsert's two events, an atomic set, a
// deletion).
func TestResumeReplaysEventsAsTheyWereSent(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	live, err := e.Watch(ctx, WatchRequest{Session: "s", Pattern: "*"})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeString, Value: String("a"),
		Metadata: map[string]string{"unit": "m"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: String("b"), Source: "w1",
		Metadata: map[string]string{"step": "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "y", Value: Float(1), CreateType: TypeFloat, Source: "w2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: []SetRequest{
		{Variable: "x", Value: String("c")}, {Variable: "y", Value: Float(2), Source: "w3"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Delete(ctx, "s", "y"); err != nil {
		t.Fatal(err)
	}
	// registered x; x; registered y, y; x, y; deleted y
	var want []Event
	for range 7 {
		want = append(want, nextEvent(t, live))
	}
	resumed, err := e.Watch(ctx, WatchRequest{Session: "s", Pattern: "*", Resume: true, StartRevision: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	for i, w := range want {
		if got := nextEvent(t, resumed); !reflect.DeepEqual(got, w) {
			t.Fatalf("replayed event %d:\n got  %+v\n want %+v", i, got, w)
		}
	}
}

// The history is a ring that grows: whatever the wraps and growths, the
// entries since any revision it still holds are every revision after it,
// in order, each with all its events, and the byte count is theirs.
func TestHistoryRingKeepsOrderAcrossWrapsAndGrowth(t *testing.T) {
	var h history
	v := &Variable{ID: "1", Name: "x", Source: "w"}
	keep := 3
	for rev := int64(1); rev <= 300; rev++ {
		if rev == 100 {
			keep = 40 // the ring grows while its head is past its start
		}
		h.add(&Event{Type: EventValueChange, Revision: rev, Variable: v, Source: "w", bytes: 1})
		if rev%7 == 0 { // a revision of two events
			h.add(&Event{Type: EventValueChange, Revision: rev, Variable: v, Source: "w", bytes: 2})
		}
		for h.len() > keep {
			h.dropOldest()
		}
		for from := h.compacted; from <= rev; from++ {
			entries, err := h.since(from)
			if err != nil {
				t.Fatalf("at %d, since %d: %v", rev, from, err)
			}
			want := from + 1
			for e := range entries {
				n := 0
				e.events(func(*histEvent) { n++ })
				if e.rev != want || n != 1+b2i(want%7 == 0) || e.bytes != 1+2*b2i(want%7 == 0) {
					t.Fatalf("at %d, since %d: entry %d with %d events of %d bytes, want revision %d", rev, from, e.rev, n, e.bytes, want)
				}
				want++
			}
			if want != rev+1 {
				t.Fatalf("at %d, since %d: the entries end before %d", rev, from, want)
			}
		}
		bytes := 0
		for _, e := range h.live() {
			bytes += e.bytes
		}
		if bytes != h.bytes || h.len() != int(rev-h.compacted) || h.len() > keep {
			t.Fatalf("at %d: %d entries of %d bytes, the history counts %d of %d", rev, len(h.live()), bytes, h.len(), h.bytes)
		}
		if _, err := h.since(h.compacted - 1); h.compacted > 0 && !errors.Is(err, ErrCompacted) {
			t.Fatalf("at %d: since %d: %v, want ErrCompacted", rev, h.compacted-1, err)
		}
	}
}

// addChange, which a set uses, leaves the very entries add leaves for the
// set's Event: in a new entry or as a revision's second event, with and
// without metadata, of values with and without pointers, across drops
// that wrap the ring.
func TestAddChangeIsAddOfItsEvent(t *testing.T) {
	now := time.Now()
	v := &Variable{ID: "1", Name: "x", Source: "w", UpdatedAt: now}
	olds := []Value{{}, Integer(3), String("old"), Embedding([]float32{1, 2}),
		TensorOf(Tensor{DType: "int8", Shape: []int64{1}, Data: []byte{1}})}
	metas := []map[string]string{nil, {}, {"k": "v"}}
	var byEvent, byChange history
	for rev := int64(1); rev <= 200; rev++ {
		for k := range 1 + b2i(rev%5 == 0) { // now and then, two at one revision
			i := int(rev) + k
			old, meta := olds[i%len(olds)], metas[i%len(metas)]
			byEvent.add(&Event{Type: EventValueChange, Revision: rev, Variable: v, OldValue: old,
				Source: v.Source, Metadata: meta, Time: v.UpdatedAt, bytes: i})
			byChange.addChange(rev, i, v, &old, meta)
		}
		for byEvent.len() > 1+int(rev%23) {
			byEvent.dropOldest()
			byChange.dropOldest()
		}
		if !reflect.DeepEqual(byEvent, byChange) {
			t.Fatalf("at revision %d, add left\n%+v\nand addChange\n%+v", rev, byEvent.live(), byChange.live())
		}
	}
}
