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
// It reads its session's feed (feed.go) from a cursor of its own: the loop
// only counts what it routes to it and wakes it, without ever blocking;
// the consumer's Drain copies its events out. If more than the buffer's
// worth of events wait, the loop cuts the subscription off with
// ErrSlowConsumer instead of waiting, so one slow consumer never slows
// writers or other watchers.
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
	slots   []*varSlot // the variables whose watchers include it
	glob    *Glob      // nil: no pattern
	staged  delivery   // what the current loop cycle routed to it, and its end
	removed bool       // unregistered from the session

	// ready has capacity 1 and is signalled after events are appended or
	// the subscription ends.
	ready   chan struct{}
	onReady func()        // WatchRequest.OnReady; immutable
	done    chan struct{} // closed when the subscription ends

	mu sync.Mutex // guards everything down to ended
	// pending is its own queue, ahead of the feed: a snapshot, a replay,
	// and what was spilled (feed.go). limit and limitBytes bound it and
	// the feed events waiting together; bytes is the eventSize of pending
	// (negative limitBytes: no bound). Coalescing subscriptions count
	// neither: they hold at most one change per variable.
	pending           []Event
	limit             int
	bytes, limitBytes int
	err               error

	// The feed: the events the loop routed to it are the ones filter takes
	// in view from cursor on. routed counts them (and their bytes) since
	// the subscription began, taken counts those drained or spilled, so
	// routed-taken wait in the feed. view is nil while none do, so an idle
	// subscription pins no chunk.
	view                    *feedView
	cursor                  int64
	routed, taken           int
	routedBytes, takenBytes int
	// draining: a Drain reads the feed outside mu. Until it is done, it
	// owns filter, latest and dead, and the loop must not spill.
	draining bool
	filter   subFilter

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

// Drain takes every waiting event, in order, appending them to spare
// (emptied first), a slice from an earlier Drain that the caller has
// finished with, or nil; what it returns is the caller's, to pass as spare
// again. (When the subscription's own queue holds events, a snapshot or a
// replay, Drain hands over that queue instead.) One buffer can so serve
// every subscription a consumer reads in turn.
// When nothing waits and the subscription has ended, Drain returns the
// reason. When nothing waits and it runs, Drain returns no events and nil.
func (s *Subscription) Drain(spare []Event) ([]Event, error) {
	clear(spare)
	evs := spare[:0]
	s.mu.Lock()
	if len(s.pending) > 0 {
		evs, s.pending = s.pending, nil
	}
	s.bytes = 0
	err := s.err
	view, from, routed, routedBytes := s.view, s.cursor, s.routed, s.routedBytes
	owed := routed - s.taken
	read := view != nil && owed > 0
	s.draining = read
	if !read {
		s.dropTombstones(&evs)
	}
	s.mu.Unlock()

	if read {
		// The copy is made outside mu, so the loop never waits for it. It
		// stops at the last event routed to s: a subscription watching
		// little of a busy session reads little more than its own.
		evs = slices.Grow(evs, owed)
		to := view.each(from, func(ev *Event) bool {
			if s.filter.take(ev) {
				evs = s.put(evs, *ev)
				owed--
			}
			return owed > 0
		})
		s.mu.Lock()
		s.draining = false
		s.dropTombstones(&evs)
		s.cursor = max(s.cursor, to)
		// A cut-off meanwhile counted everything as taken already.
		s.taken = max(s.taken, routed)
		s.takenBytes = max(s.takenBytes, routedBytes)
		if s.taken == s.routed {
			s.view = nil
		}
		s.mu.Unlock()
	}
	if len(evs) == 0 {
		return evs, err
	}
	s.lastRev = max(s.lastRev, evs[len(evs)-1].Revision)
	return evs, nil
}

// keptSpare bounds the buffer Next keeps between drains: a burst grows
// it to the burst's size, and kept for reuse, 1,000 idle watches would
// each hold what their largest burst needed.
const keptSpare = 8

// dropTombstones removes what coalescing merged away from evs and resets
// the index. With mu held, or while draining.
func (s *Subscription) dropTombstones(evs *[]Event) {
	if s.coalesce && s.dead > 0 {
		*evs = slices.DeleteFunc(*evs, func(ev Event) bool { return ev.Type == 0 })
	}
	clear(s.latest)
	s.dead = 0
}

// Next returns the next event, waiting for one if needed. It returns the
// subscription's end reason once every event has been returned, or ctx's
// error.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for len(s.buf) == 0 {
		evs, err := s.Drain(s.spare)
		s.spare = evs[:0]
		if cap(evs) > keptSpare {
			s.spare = nil
		}
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
// subscription counts merged changes once, and changes in the feed before
// it merges them).
func (s *Subscription) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued()
}

// queued is Pending with mu held.
func (s *Subscription) queued() int {
	return len(s.pending) - s.dead + s.routed - s.taken
}

// HeartbeatRevision returns the revision up to which every change has been
// drained: a heartbeat sent after every drained event carries it.
func (s *Subscription) HeartbeatRevision() int64 {
	// The loop routes a cycle's events to their subscriptions before it
	// stores the session's published revision. So if nothing waits after
	// we loaded rev, every event up to rev has been drained.
	rev := s.published.Load()
	s.mu.Lock()
	empty := len(s.pending) == 0 && s.routed == s.taken
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

// delivery is what one loop cycle routed to a subscription: n events of
// its session's feed, the first at position first, bytes in all, visible
// in view; and its end, if final is set.
type delivery struct {
	n, bytes int
	first    int64
	view     *feedView
	final    error
}

// publish hands the subscription a cycle's delivery. It is called by the
// loop or the syncer, one at a time, and never blocks on the consumer. It
// returns false if the subscription has ended (now or before).
//
// A cut-off drops what waited and records its reason in one critical
// section (Consul's forceClose): with a gap between the two,
// HeartbeatRevision could find nothing waiting and no end, and claim
// revisions whose events were just dropped.
func (s *Subscription) publish(d delivery) bool {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return false
	}
	final := d.final
	if d.n > 0 {
		if !s.coalesce && (s.queued()+d.n > s.limit ||
			s.limitBytes >= 0 && s.bytes+s.routedBytes-s.takenBytes+d.bytes > s.limitBytes) {
			// Cut off: what waits is dropped too, since the consumer must
			// resume from its last revision anyway and memory is the point.
			s.pending = nil
			s.bytes = 0
			s.routed += d.n
			s.routedBytes += d.bytes
			s.taken, s.takenBytes = s.routed, s.routedBytes
			s.view = nil
			final = ErrSlowConsumer
		} else {
			if s.routed == s.taken {
				// Nothing of the feed waits: skip what others got since.
				s.cursor = max(s.cursor, d.first)
			}
			s.routed += d.n
			s.routedBytes += d.bytes
			s.view = d.view
		}
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

// spill moves what waits for s in the feed into its own queue, when it
// lags so far that it would pin the feed (feed.go): pinned events from its
// cursor to the end, of which staged are routed to s in the cycle being
// applied (it is owed those too). It reports whether it did; not while a Drain reads
// the feed (which will move the cursor itself), nor once s ended, nor when
// s is owed nearly all of what it pins. A copy of those would hold as much
// as the feed does, and cost the loop a copy of every event: a watcher of
// a whole session that lags behind a flat-out writer would have every
// event copied once more. The feed then holds at most a third more for s
// than its queue would, and its buffer bounds both. The loop calls it,
// holding no other lock.
func (s *Subscription) spill(pinned int64, staged int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining || s.err != nil || s.routed == s.taken {
		return false
	}
	owed := s.routed - s.taken
	if !s.coalesce && 4*int64(owed+staged) > 3*pinned {
		return false
	}
	if !s.coalesce { // every event owed is appended: grow once, not by doubling
		s.pending = slices.Grow(s.pending, int(owed))
	}
	s.cursor = s.view.each(s.cursor, func(ev *Event) bool {
		if s.filter.take(ev) {
			s.add(*ev)
			if !s.coalesce {
				s.bytes += ev.bytes
			}
			owed--
		}
		return owed > 0
	})
	s.taken, s.takenBytes = s.routed, s.routedBytes
	s.view = nil
	return true
}

// holds returns the oldest feed position s still needs, if it needs any.
func (s *Subscription) holds() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.routed == s.taken {
		return 0, false
	}
	return s.cursor, true
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
	if reason == ErrUnsubscribed { // nobody reads any more
		s.view = nil
		s.taken, s.takenBytes = s.routed, s.routedBytes
	}
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

// add appends ev to pending, merging as put does. Called with mu held, or
// before the subscription is visible to anyone.
func (s *Subscription) add(ev Event) {
	s.pending = s.put(s.pending, ev)
	if s.coalesce && s.dead > 32 && s.dead > len(s.pending)/2 {
		s.compact()
	}
}

// put appends ev to evs; a coalescing subscription first merges a waiting
// change of the same variable (indexed by latest) into it. With mu held,
// or while draining.
func (s *Subscription) put(evs []Event, ev Event) []Event {
	if !s.coalesce {
		return append(evs, ev)
	}
	if ev.Type == EventValueChange {
		id := ev.Variable.ID
		if i, ok := s.latest[id]; ok {
			ev = Coalesce(evs[i], ev)
			evs[i] = Event{}
			s.dead++
		}
		// The merged change moves to the end, keeping revisions in order.
		s.latest[id] = len(evs)
	}
	return append(evs, ev)
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
	for i := range evs {
		n += eventSize(&evs[i])
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
