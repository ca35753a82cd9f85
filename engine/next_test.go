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
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Integer(0))
	sub, err := e.Watch(ctx, WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
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
