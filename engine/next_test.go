package engine

import (
	"context"
	"testing"
	"time"
)

// TestNextOwnsOnlyWhatDrainReturned: after a Drain that returns nothing
// (a wake for events an earlier Drain took), Next must not pass the same
// spare again: the subscription took it over as its queue, and handing it
// back made the consumer read a slice the loop was appending to.
func TestNextOwnsOnlyWhatDrainReturned(t *testing.T) {
	ctx := context.Background()
	e := feedSession(t, "x")
	sub := mustWatch(t, e, WatchRequest{})
	const sets = 3000
	go func() {
		for i := 1; i <= sets; i++ {
			if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
				return
			}
		}
	}()
	for i := 1; i <= sets; i++ {
		ev := nextEvent(t, sub)
		if got := ev.Variable.Value.Integer(); got != int64(i) {
			t.Fatalf("event %d has x=%d", i, got)
		}
		if i%64 == 0 { // let changes pile up, so wakes outnumber drains
			time.Sleep(time.Millisecond)
		}
	}
}

// TestBurstBuffersAreNotKept: the buffer a burst needed is not held for
// good: an idle subscription keeps at most a few events' worth.
func TestBurstBuffersAreNotKept(t *testing.T) {
	ctx := context.Background()
	e := feedSession(t, "x")
	sub := mustWatch(t, e, WatchRequest{})
	sets := make([]SetRequest, 500)
	for i := range sets {
		sets[i] = SetRequest{Variable: "x", Value: Integer(int64(i))}
	}
	if _, err := e.SetMany(ctx, SetManyRequest{Session: "s", Sets: sets}); err != nil {
		t.Fatal(err)
	}
	for range sets {
		nextEvent(t, sub)
	}
	if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(-1)}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, sub) // drains again, handing back the burst's buffer
	sub.mu.Lock()
	held := cap(sub.pending)
	sub.mu.Unlock()
	if held > keptSpare || cap(sub.spare) > keptSpare {
		t.Fatalf("after the burst the subscription holds buffers of %d and %d events (keep at most %d)", held, cap(sub.spare), keptSpare)
	}
}
