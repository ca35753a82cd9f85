package plugins

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDeadlineCtxIgnoresOldParents cancels each call's context right after
// the call, racing with the next call's arm: once arm succeeds, a late
// cancellation of an earlier context must not end the new call.
func TestDeadlineCtxIgnoresOldParents(t *testing.T) {
	c := newDeadlineCtx(time.Hour)
	replaced := 0
	for i := range 2000 {
		ctx, cancel := context.WithCancel(context.Background())
		if !c.arm(ctx) {
			c.release()
			c = newDeadlineCtx(time.Hour)
			replaced++
			if !c.arm(ctx) {
				t.Fatalf("call %d: a fresh context did not arm", i)
			}
		}
		if !c.disarm() {
			t.Fatalf("call %d: ended by an earlier call's cancellation", i)
		}
		go cancel()
	}
	t.Logf("replaced %d spent contexts", replaced)
}

func TestDeadlineCtxEnds(t *testing.T) {
	c := newDeadlineCtx(time.Millisecond)
	c.arm(context.Background())
	select {
	case <-c.Done():
	case <-time.After(time.Minute):
		t.Fatal("deadline never fired")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) || c.disarm() || c.arm(context.Background()) {
		t.Fatalf("after the deadline: err %v, and the context must be spent", c.Err())
	}

	c = newDeadlineCtx(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	c.arm(ctx)
	cancel()
	select {
	case <-c.Done():
	case <-time.After(time.Minute):
		t.Fatal("the caller's cancellation was not forwarded")
	}
	if !errors.Is(c.Err(), context.Canceled) || c.disarm() {
		t.Fatalf("after cancel: err %v", c.Err())
	}
}
