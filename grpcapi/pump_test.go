package grpcapi

import (
	"context"
	"testing"
	"time"

	"github.com/varwatch/varwatch/engine"
)

// endedSource is a source that has ended before anything was drained, as
// a resumed watch cut off before its replay went out.
type endedSource struct {
	snapshot int64
	done     chan struct{}
}

func (e endedSource) SnapshotRevision() int64 { return e.snapshot }
func (e endedSource) Drain([]engine.Event) ([]engine.Event, error) {
	return nil, engine.ErrSlowConsumer
}
func (e endedSource) Ready() <-chan struct{} { return e.done }
func (e endedSource) Done() <-chan struct{}  { return e.done }
func (e endedSource) Pending() int           { return 0 }
func (e endedSource) Heartbeat(now time.Time) engine.Event {
	return engine.Event{Type: engine.EventHeartbeat, Revision: 2, Time: now}
}

// TestPumpClaimsOnlyWhatWentOut: a watch resumed from revision 2, whose
// subscription registered at 10, ends before its replay of 3..10 was
// sent. The revision it names to resume from must be 2, not the snapshot
// revision 10: that would skip the replay. (It was 10.)
func TestPumpClaimsOnlyWhatWentOut(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	src := endedSource{snapshot: 10, done: make(chan struct{})}
	close(src.done)
	for _, from := range []int64{2, 0} { // a resume from 2; a snapshot whose initial values never went out
		delivered, end := h.srv.pump(context.Background(), src, pacing{heartbeat: time.Hour}, false, from,
			func([]engine.Event) error { return nil })
		if end != engine.ErrSlowConsumer || delivered != from {
			t.Fatalf("pump from %d: delivered %d, end %v; want %d and the slow-consumer end", from, delivered, end, from)
		}
	}
}
