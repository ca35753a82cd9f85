package engine

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Subscription is one watcher's stream of events.
//
// The loop appends events to it without ever blocking; the consumer drains
// them. If more than the buffer's worth of events wait, the loop cuts the
// subscription off with ErrSlowConsumer instead of waiting, so one slow
// consumer never slows writers or other watchers.
//
// # Notes
//
// Drain, Next and HeartbeatRevision are for a single consumer goroutine.
// Close, Done, Err and Ready may be called from anywhere.
type Subscription struct {
	engine      *Engine
	snapshotRev int64
	incarnation string
	// published is the session's revision after the loop's last publish.
	// Read with atomics only.
	published *atomic.Int64

	// Owned by the loop goroutine.
	sess    *session
	ids     []string // ids of the variables whose watchers include it
	glob    *Glob    // nil: no pattern
	staged  []Event  // events of the current loop cycle, not yet published
	final   error    // set when the subscription ends after staged
	removed bool     // unregistered from the session

	// ready has capacity 1 and is signalled after events are appended or
	// the subscription ends.
	ready   chan struct{}
	onReady func()        // WatchRequest.OnReady; immutable
	done    chan struct{} // closed when the subscription ends

	mu      sync.Mutex // guards pending, limit, bytes, limitBytes, err, latest and dead
	pending []Event
	limit   int
	// bytes is the eventSize of pending; limitBytes bounds it (negative:
	// no bound). Coalescing subscriptions count neither: they hold at most
	// one change per variable.
	bytes, limitBytes int
	err               error

	// Coalescing (immutable coalesce flag): latest maps a variable id to
	// the index of its waiting value change in pending; merged-away
	// entries stay as zero Events (tombstones), dead counts them.
	coalesce bool
	latest   map[string]int
	dead     int

	ended atomic.Bool // set once err is set; lets the loop skip ended subs cheaply

	// Owned by the consumer.
	lastRev int64   // revision of the last event drained
	buf     []Event // Next's unread events
	spare   []Event
}

// SnapshotRevision is the revision of the watch's snapshot: initial values
// are the values at this revision, and changes after it are delivered.
func (s *Subscription) SnapshotRevision() int64 { return s.snapshotRev }

// Incarnation is the incarnation of the watched session: the history the
// subscription's revisions belong to.
func (s *Subscription) Incarnation() string { return s.incarnation }

// Ready is signalled when events may be waiting or the subscription ended.
// A signal may be spurious; Drain tells.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Done is closed when the subscription has ended: no event will be added
// any more. Events already waiting can still be drained.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the subscription ended (ErrSessionClosed,
// ErrSlowConsumer, ErrUnsubscribed, ErrClosed), or nil while it runs.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Drain takes every waiting event, in order. spare, if not nil, is a slice
// from an earlier Drain the caller has finished with; the subscription
// takes it over as its next buffer, even when Drain returns no events, so
// the caller must not touch spare afterwards.
// When nothing waits and the subscription has ended, Drain returns the
// reason. When nothing waits and it runs, Drain returns no events and nil.
func (s *Subscription) Drain(spare []Event) ([]Event, error) {
	clear(spare)
	s.mu.Lock()
	evs := s.pending
	s.pending = spare[:0]
	s.bytes = 0
	err := s.err
	if s.coalesce && s.dead > 0 {
		evs = slices.DeleteFunc(evs, func(ev Event) bool { return ev.Type == 0 })
	}
	clear(s.latest)
	s.dead = 0
	s.mu.Unlock()
	if len(evs) == 0 {
		return evs, err
	}
	s.lastRev = max(s.lastRev, evs[len(evs)-1].Revision)
	return evs, nil
}

// Next returns the next event, waiting for one if needed. It returns the
// subscription's end reason once every event has been returned, or ctx's
// error.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for len(s.buf) == 0 {
		evs, err := s.Drain(s.spare)
		// Drain took spare over even if it returned nothing (passing it
		// again let the loop append to what we were handed); what it
		// returned is ours.
		s.spare = evs[:0]
		if err != nil {
			return Event{}, err
		}
		if len(evs) > 0 {
			s.buf = evs
			break
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
	ev := s.buf[0]
	s.buf[0] = Event{}
	s.buf = s.buf[1:]
	return ev, nil
}

// Pending returns how many events wait to be drained (a coalescing
// subscription counts merged changes once).
func (s *Subscription) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) - s.dead
}

// HeartbeatRevision returns the revision up to which every change has been
// drained: a heartbeat sent after every drained event carries it.
func (s *Subscription) HeartbeatRevision() int64 {
	// The loop appends a cycle's events before it stores the session's
	// published revision. So if nothing waits after we loaded rev, every
	// event up to rev has been drained.
	rev := s.published.Load()
	s.mu.Lock()
	empty := len(s.pending) == 0
	ended := s.err != nil
	s.mu.Unlock()
	// An ended subscription gets nothing more (a cut-off one even lost what
	// waited), so the session's revision says nothing about it.
	if empty && len(s.buf) == 0 && !ended {
		return max(rev, s.lastRev)
	}
	return s.lastRev
}

// Heartbeat returns a heartbeat event at HeartbeatRevision.
func (s *Subscription) Heartbeat(now time.Time) Event {
	return Event{Type: EventHeartbeat, Revision: s.HeartbeatRevision(), Time: now, Incarnation: s.incarnation}
}

// Close ends the subscription (ErrUnsubscribed) and unregisters it. It is
// idempotent and safe to call at any time.
func (s *Subscription) Close() {
	if s.end(ErrUnsubscribed) {
		s.engine.unsubscribe(s)
	}
}

// publish appends evs, then ends the subscription if final is set. It is
// called by the loop only, and never blocks on the consumer. It returns
// false if the subscription has ended (now or before).
//
// A cut-off drops what waited and records its reason in one critical
// section (Consul's forceClose): with a gap between the two,
// HeartbeatRevision could find nothing waiting and no end, and claim
// revisions whose events were just dropped.
func (s *Subscription) publish(evs []Event, final error) bool {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return false
	}
	if s.coalesce {
		for _, ev := range evs {
			s.add(ev)
		}
	} else if n := eventsSize(evs); len(s.pending)+len(evs) > s.limit || s.limitBytes >= 0 && s.bytes+n > s.limitBytes {
		// Cut off: what waits is dropped too, since the consumer must
		// resume from its last revision anyway and memory is the point.
		s.pending = nil
		s.bytes = 0
		final = ErrSlowConsumer
	} else {
		s.pending = append(s.pending, evs...)
		s.bytes += n
	}
	if final != nil {
		s.setErr(final)
	}
	s.mu.Unlock()
	if hook := testHookPublished; hook != nil {
		hook(s)
	}
	if final != nil {
		s.closeDone()
		return false
	}
	s.signal()
	return true
}

// testHookPublished, when set (by tests, before the engine starts), runs
// right after publish releases mu: the moment a consumer may look.
var testHookPublished func(*Subscription)

// end records reason and closes done, once; it reports whether this call
// ended the subscription.
func (s *Subscription) end(reason error) bool {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return false
	}
	s.setErr(reason)
	s.mu.Unlock()
	s.closeDone()
	return true
}

// setErr records why the subscription ended. With mu held, and err nil.
func (s *Subscription) setErr(reason error) {
	s.err = reason
	s.ended.Store(true)
}

// closeDone wakes everyone waiting once err is set. Called exactly once,
// by whoever set err.
func (s *Subscription) closeDone() {
	close(s.done)
	s.signal()
}

// add appends ev to pending; a coalescing subscription first merges a
// waiting change of the same variable into it. Called with mu held, or
// before the subscription is visible to anyone.
func (s *Subscription) add(ev Event) {
	if !s.coalesce {
		s.pending = append(s.pending, ev)
		return
	}
	if ev.Type == EventValueChange {
		id := ev.Variable.ID
		if i, ok := s.latest[id]; ok {
			ev = Coalesce(s.pending[i], ev)
			s.pending[i] = Event{}
			s.dead++
		}
		// The merged change moves to the end, keeping revisions in order.
		s.latest[id] = len(s.pending)
	}
	s.pending = append(s.pending, ev)
	if s.dead > 32 && s.dead > len(s.pending)/2 {
		s.compact()
	}
}

// compact drops tombstones and rebuilds the index. With mu held.
func (s *Subscription) compact() {
	s.pending = slices.DeleteFunc(s.pending, func(ev Event) bool { return ev.Type == 0 })
	s.dead = 0
	clear(s.latest)
	for i, ev := range s.pending {
		if ev.Type == EventValueChange {
			s.latest[ev.Variable.ID] = i
		}
	}
}

// eventsSize is the eventSize of evs together.
func eventsSize(evs []Event) int {
	n := 0
	for _, ev := range evs {
		n += eventSize(ev)
	}
	return n
}

func (s *Subscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
	if s.onReady != nil {
		s.onReady()
	}
}
