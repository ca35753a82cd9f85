package grpcapi

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/varwatch/varwatch/engine"
)

// pump moves events from sub to send until the subscription or the stream
// ends, and returns the last revision delivered with the reason it stopped.
// from is the revision the client has everything up to before the first
// event (openedWatch.from): not the snapshot revision, which a resume's
// replay or a snapshot's initial values still have to reach.
//
// It keeps the watch guarantees by construction: Drain hands out events in
// revision order, each exactly once, with every event of an atomic set in
// the same drain; and a heartbeat is built only after everything drained so
// far was sent, so its revision (Subscription.HeartbeatRevision) never runs
// ahead of what the client has.
//
// With greet (a watch without initial values), a heartbeat goes out at
// once: it tells the client in-band from which revision on the stream is
// complete, as initial_values_complete does for a watch with initial
// values, so a client can resume from it even if no change ever came.
//
// Heartbeats come at the interval with ±10% jitter (so streams started
// together do not tick together), and a tick is skipped when data went out
// since the previous one: the client knows the stream is alive.
//
// # Notes
//
// Runs on the stream's handler goroutine only, which owns spare and
// delivered. It never blocks the engine: a client that reads too slowly
// lets its subscription's buffer fill until the engine cuts it off with
// ErrSlowConsumer.
func (s *Server) pump(ctx context.Context, sub source, pace pacing, greet bool, from int64, send func([]engine.Event) error) (delivered int64, end error) {
	delivered = from
	sentData := false // data went out since the last heartbeat tick
	deliver := func(evs []engine.Event) error {
		if err := send(evs); err != nil {
			return err
		}
		s.stats.sent(evs)
		s.hist.lag(evs)
		delivered = max(delivered, evs[len(evs)-1].Revision)
		return nil
	}
	heartbeat := func() error { return deliver([]engine.Event{sub.Heartbeat(s.now())}) }

	if greet {
		if err := heartbeat(); err != nil {
			return delivered, err
		}
	}
	ticker := time.NewTimer(jitter(pace.heartbeat))
	defer ticker.Stop()
	tick := func() error {
		ticker.Reset(jitter(pace.heartbeat))
		if sentData {
			sentData = false
			return nil
		}
		return heartbeat()
	}

	var spare []engine.Event
	for {
		if pace.linger > 0 {
			if err := s.linger(ctx, sub, pace); err != nil {
				return delivered, err
			}
		}
		// Drain appends into spare and hands back evs, ours until it is
		// passed as spare again.
		evs, err := sub.Drain(spare)
		if err != nil {
			return delivered, err
		}
		spare = evs
		if len(evs) > 0 {
			if err := deliver(evs); err != nil {
				return delivered, err
			}
			sentData = true
			// Drain again before sleeping: more may wait, or the end
			// reason. A steady flow never reaches the select below, so
			// look for a gone client and shutdown here. Heartbeats need
			// no look: data went out, so a tick that falls due now is
			// skipped anyway, once the flow pauses.
			if err := ctx.Err(); err != nil {
				return delivered, err
			}
			if s.shuttingDown() {
				return delivered, errShutdown
			}
			continue
		}
		select {
		case <-sub.Ready():
		case <-ticker.C:
			if err := tick(); err != nil {
				return delivered, err
			}
		case <-ctx.Done():
			return delivered, ctx.Err()
		case <-s.shutdown:
			return delivered, errShutdown
		}
	}
}

// shuttingDown reports whether Shutdown was called.
func (s *Server) shuttingDown() bool {
	select {
	case <-s.shutdown:
		return true
	default:
		return false
	}
}

// linger holds a batched stream back, while some but fewer than pace.fill
// events wait, until that many wait or pace.linger has passed, so the
// client gets fewer, fuller messages (and a coalescing stream merges more
// changes per variable). An idle stream does not linger: the clock starts
// when the first event is seen waiting.
func (s *Server) linger(ctx context.Context, sub source, pace pacing) error {
	if n := sub.Pending(); n == 0 || n >= pace.fill {
		return nil
	}
	t := time.NewTimer(pace.linger)
	defer t.Stop()
	for sub.Pending() < pace.fill {
		select {
		case <-sub.Ready(): // maybe more; the loop condition tells
		case <-sub.Done():
			return nil
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.shutdown:
			return errShutdown
		}
	}
	return nil
}

// source is what pump reads from: an *engine.Subscription, or a filtered
// stream's member of a chain feed.
type source interface {
	SnapshotRevision() int64
	Drain(spare []engine.Event) ([]engine.Event, error)
	Ready() <-chan struct{}
	Done() <-chan struct{}
	Pending() int
	Heartbeat(now time.Time) engine.Event
}

// jitter spreads d by ±10%.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}
