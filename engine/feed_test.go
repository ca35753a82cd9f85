package engine

import (
	"context"
	"fmt"
	"testing"
)

// feedSession starts an engine with session "s" holding the integer
// variables vars, all 0; it is closed when t ends.
func feedSession(t *testing.T, vars ...string) *Engine {
	t.Helper()
	e := New(Config{})
	t.Cleanup(func() { e.Close() })
	mustCreate(t, e, "s")
	for _, name := range vars {
		mustRegister(t, e, "s", name, Integer(0))
	}
	return e
}

// mustWatch starts a watch of session "s", closed when t ends.
func mustWatch(t *testing.T, e *Engine, req WatchRequest) *Subscription {
	t.Helper()
	req.Session = "s"
	sub, err := e.Watch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	return sub
}

// feedLen is how many events s's feed holds, read on the loop.
func feedLen(t *testing.T, e *Engine, session string) (held int64, chunks int) {
	t.Helper()
	inLoop(t, e, func(st *state) {
		f := &st.sessions[session].feed
		held, chunks = f.end-f.start(), len(f.chunks)
	})
	return held, chunks
}

// TestFeedHoldsOnlyWhatIsUndrained: subscribers that keep up let the feed
// go; the events are stored once, not once per subscriber.
func TestFeedHoldsOnlyWhatIsUndrained(t *testing.T) {
	tinyFeed(t)
	ctx := context.Background()
	e := feedSession(t, "x")
	subs := make([]*Subscription, 50)
	for i := range subs {
		sub := mustWatch(t, e, WatchRequest{Variables: []string{"x"}})
		subs[i] = sub
	}
	for i := 1; i <= 100; i++ {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
		for j, sub := range subs {
			evs, err := sub.Drain(nil)
			if err != nil || len(evs) != 1 || evs[0].Variable.Value.Integer() != int64(i) {
				t.Fatalf("set %d, subscriber %d: drained %v, %v", i, j, evs, err)
			}
		}
	}
	// Kept: at most the chunk being filled and the one before it.
	if held, chunks := feedLen(t, e, "s"); chunks > 2 || held > 2*int64(maxChunk) {
		t.Fatalf("the feed holds %d events in %d chunks with every subscriber drained", held, chunks)
	}
}

// TestFeedSpillsAStalledReader: a subscriber that stops draining does not
// make the feed grow: past feedSpill its events move to its own queue,
// where its buffer bounds them as before, and it gets every one, in order.
func TestFeedSpillsAStalledReader(t *testing.T) {
	tinyFeed(t)
	ctx := context.Background()
	e := feedSession(t, "x", "y")
	fast := mustWatch(t, e, WatchRequest{})
	stalled := mustWatch(t, e, WatchRequest{Variables: []string{"x"}, Buffer: 60})
	maxHeld, lastRev := int64(0), int64(0)
	for i := 1; i <= 100; i++ {
		name := "y"
		if i%2 == 0 {
			name = "x" // 50 changes of x: within the stalled one's buffer
		}
		res, err := e.Set(ctx, SetRequest{Session: "s", Variable: name, Value: Integer(int64(i))})
		if err != nil {
			t.Fatal(err)
		}
		lastRev = res.Revision
		if _, err := fast.Drain(nil); err != nil {
			t.Fatal(err)
		}
		held, _ := feedLen(t, e, "s")
		maxHeld = max(maxHeld, held)
	}
	if maxHeld > feedSpill+2*int64(maxChunk) {
		t.Fatalf("the feed grew to %d events behind a stalled reader (spill at %d)", maxHeld, feedSpill)
	}
	if got := stalled.Pending(); got != 50 {
		t.Fatalf("Pending() = %d, want 50", got)
	}
	evs, err := stalled.Drain(nil)
	if err != nil || len(evs) != 50 {
		t.Fatalf("drained %d events, %v; want the 50 changes of x", len(evs), err)
	}
	for k, ev := range evs {
		if want := int64(2 * (k + 1)); ev.Variable.Name != "x" || ev.Variable.Value.Integer() != want {
			t.Fatalf("event %d is %s=%d, want x=%d", k, ev.Variable.Name, ev.Variable.Value.Integer(), want)
		}
	}
	if got := stalled.HeartbeatRevision(); got != lastRev {
		t.Fatalf("heartbeat revision %d after draining everything, want %d", got, lastRev)
	}
}

// TestFeedBoundsCountSpilledAndUnspilled: the buffer bounds the events
// waiting in the feed and in the subscription's own queue together, so
// spilling never hides a slow consumer.
func TestFeedBoundsCountSpilledAndUnspilled(t *testing.T) {
	tinyFeed(t)
	ctx := context.Background()
	e := feedSession(t, "x")
	sub := mustWatch(t, e, WatchRequest{Buffer: 20})
	for i := 1; i <= 21; i++ {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
		if i <= 20 && sub.Err() != nil {
			t.Fatalf("cut off after %d changes with a buffer of 20: %v", i, sub.Err())
		}
	}
	<-sub.Done()
	if _, err := sub.Drain(nil); err != ErrSlowConsumer {
		t.Fatalf("after 21 undrained changes: %v, want ErrSlowConsumer", err)
	}
	// What is left is chunk granularity: the chunk of the last publish,
	// the one before and the one being filled.
	if held, _ := feedLen(t, e, "s"); held > 3*int64(maxChunk) {
		t.Fatalf("the cut-off subscriber still pins %d events", held)
	}
}

// TestFeedCoalescingSpillMerges: a stalled coalescing subscriber spills
// into its own queue merged, one change per variable, however many
// changes the feed went through.
func TestFeedCoalescingSpillMerges(t *testing.T) {
	tinyFeed(t)
	ctx := context.Background()
	e := feedSession(t)
	const vars = 3
	for i := range vars {
		mustRegister(t, e, "s", fmt.Sprintf("v%d", i), Integer(0))
	}
	sub := mustWatch(t, e, WatchRequest{Coalesce: true, Buffer: 4})
	for i := 1; i <= 300; i++ {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: fmt.Sprintf("v%d", i%vars), Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if held, _ := feedLen(t, e, "s"); held > feedSpill+2*int64(maxChunk) {
		t.Fatalf("the feed holds %d events behind a coalescing reader", held)
	}
	evs, err := sub.Drain(nil)
	if err != nil || len(evs) != vars {
		t.Fatalf("drained %d events (%v), want one per variable", len(evs), err)
	}
	var total int64
	for k, ev := range evs {
		if want := int64(298 + k); ev.Variable.Value.Integer() != want {
			t.Fatalf("event %d: %s=%d, want %d", k, ev.Variable.Name, ev.Variable.Value.Integer(), want)
		}
		total += ev.Coalesced
	}
	if total != 300 {
		t.Fatalf("the merged events stand for %d changes, want 300", total)
	}
}

// TestFeedNarrowReaderStopsAtItsLast: a subscription watching one
// variable of a busy session reads the feed only up to its own last
// event, not through everything the cycle published after it.
func TestFeedNarrowReaderStopsAtItsLast(t *testing.T) {
	ctx := context.Background()
	e := feedSession(t)
	const others = 200
	sets := []SetRequest{{Variable: "x", Value: Integer(1)}}
	mustRegister(t, e, "s", "x", Integer(0))
	for i := range others {
		name := fmt.Sprintf("o%d", i)
		mustRegister(t, e, "s", name, Integer(0))
		sets = append(sets, SetRequest{Variable: name, Value: Integer(1)})
	}
	narrow := mustWatch(t, e, WatchRequest{Variables: []string{"x"}})
	all := mustWatch(t, e, WatchRequest{})
	if _, err := e.SetMany(ctx, SetManyRequest{Session: "s", Sets: sets, Atomic: true}); err != nil {
		t.Fatal(err)
	}
	evs, err := narrow.Drain(nil)
	if err != nil || len(evs) != 1 || evs[0].Variable.Name != "x" {
		t.Fatalf("drained %v, %v; want the change of x", evs, err)
	}
	narrow.mu.Lock()
	cursor := narrow.cursor
	narrow.mu.Unlock()
	var end int64
	inLoop(t, e, func(st *state) { end = st.sessions["s"].feed.end })
	if end-cursor != others {
		t.Fatalf("the reader stopped %d events before the end of the feed, want %d (right after x)", end-cursor, others)
	}
	if evs, err := all.Drain(nil); err != nil || len(evs) != others+1 {
		t.Fatalf("the reader of everything drained %d events, %v", len(evs), err)
	}
}

// TestPatternWatchOfAChurningSession: a long pattern watch forgets the
// variables deleted since it started, instead of growing with every
// registration it ever saw.
func TestPatternWatchOfAChurningSession(t *testing.T) {
	ctx := context.Background()
	e := feedSession(t)
	sub := mustWatch(t, e, WatchRequest{Pattern: "tmp_*", Coalesce: true})
	for i := range 1000 {
		name := fmt.Sprintf("tmp_%d", i)
		mustRegister(t, e, "s", name, Integer(0))
		if _, err := e.Delete(ctx, "s", name); err != nil {
			t.Fatal(err)
		}
	}
	var held int
	inLoop(t, e, func(*state) { held = len(sub.slots) })
	if held > 128 {
		t.Fatalf("the watch holds %d variables after 1,000 were registered and deleted", held)
	}
}

// TestFeedKeepsWhatAReaderIsOwedNearlyAllOf: a stalled watcher of the
// whole session is not spilled (a copy would hold as much as the feed,
// and cost the loop a copy per event), it still gets every event in
// order, and its buffer still cuts it off: what it pins counts.
func TestFeedKeepsWhatAReaderIsOwedNearlyAllOf(t *testing.T) {
	tinyFeed(t)
	ctx := context.Background()
	e := feedSession(t, "x", "y")
	stalled := mustWatch(t, e, WatchRequest{Buffer: 200})
	const sets = 100
	for i := 1; i <= sets; i++ {
		name := []string{"x", "y"}[i%2]
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: name, Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if held, _ := feedLen(t, e, "s"); held < sets {
		t.Fatalf("the feed holds %d events: the whole-session reader was spilled", held)
	}
	if got := stalled.Pending(); got != sets {
		t.Fatalf("Pending() = %d, want %d", got, sets)
	}
	drainCounting(t, stalled, sets)
	// Past its buffer it is cut off, though nothing of it was spilled.
	for i := 1; i <= 201; i++ {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	<-stalled.Done()
	if _, err := stalled.Drain(nil); err != ErrSlowConsumer {
		t.Fatalf("after 201 undrained changes with a buffer of 200: %v, want ErrSlowConsumer", err)
	}
}

// TestFeedCountsWhatTheCycleRoutes: a reader owed events of earlier cycles
// and a large share of the cycle being applied is owed nearly all it pins
// while the cycle runs too (the feed sweeps in the middle of a cycle,
// before the cycle's events are routed), so it is not spilled then either.
func TestFeedCountsWhatTheCycleRoutes(t *testing.T) {
	tinyFeed(t)
	ctx := context.Background()
	e := feedSession(t, "x", "y")
	stalled := mustWatch(t, e, WatchRequest{Buffer: 1000})
	const early, batch = 20, 100
	for i := 1; i <= early; i++ {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	sets := make([]SetRequest, batch)
	for i := range sets {
		sets[i] = SetRequest{Variable: []string{"x", "y"}[i%2], Value: Integer(int64(early + 1 + i))}
	}
	if _, err := e.SetMany(ctx, SetManyRequest{Session: "s", Sets: sets}); err != nil {
		t.Fatal(err)
	}
	if held, _ := feedLen(t, e, "s"); held < early+batch {
		t.Fatalf("the feed holds %d events: the reader was spilled while the batch applied", held)
	}
	drainCounting(t, stalled, early+batch)
}

// drainCounting drains sub and wants n changes whose values count 1..n.
func drainCounting(t *testing.T, sub *Subscription, n int) {
	t.Helper()
	evs, err := sub.Drain(nil)
	if err != nil || len(evs) != n {
		t.Fatalf("drained %d events, %v; want %d", len(evs), err, n)
	}
	for k, ev := range evs {
		if want := int64(k + 1); ev.Variable.Value.Integer() != want {
			t.Fatalf("event %d has value %d, want %d", k, ev.Variable.Value.Integer(), want)
		}
	}
}
