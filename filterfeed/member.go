package filterfeed

import (
	"slices"
	"sync"
	"time"

	"github.com/varwatch/varwatch/engine"
)

// Member is one filtered watch's end of a chain feed: a bounded queue the
// feed pushes to without blocking and the watch's sender drains. It offers
// the same methods as an *engine.Subscription.
//
// # Notes
//
// Everything below mu is guarded by it; the feed pushes, the pump drains.
// lastRev is the pump's.
type Member struct {
	joined  chan struct{} // closed when the feed has admitted it
	ready   chan struct{} // capacity 1, signalled on push and end
	onReady func()        // called on every signal (engine.WatchRequest.OnReady); immutable
	done    chan struct{}

	mu          sync.Mutex
	started     bool
	snap        int64
	incarnation string // the session's, from the snapshot
	w           watched
	queue       []engine.Event
	limit       int
	// floor: events with a revision <= floor are not for this member.
	floor     int64
	processed int64
	err       error
	// Coalescing (coalesce is immutable): latest maps a variable id to its
	// waiting value change in queue; dead counts merged-away entries.
	coalesce bool
	latest   map[string]int
	dead     int

	lastRev int64

	feeds *Feeds
	feed  *chainFeed // set by join
}

func newMember(fs *Feeds, limit int, coalesce bool, onReady func()) *Member {
	return &Member{
		joined:   make(chan struct{}),
		ready:    make(chan struct{}, 1),
		onReady:  onReady,
		done:     make(chan struct{}),
		limit:    limit,
		floor:    -1,
		coalesce: coalesce,
		latest:   map[string]int{},
		feeds:    fs,
	}
}

// push appends the events of a batch the feed has filtered, up to revision
// processed. Before start it keeps every variable event (start picks).
func (m *Member) push(evs []engine.Event, processed int64) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	n := len(m.queue)
	for i := range evs {
		ev := &evs[i]
		// session_closed carries the session's last revision, which may
		// be the member's snapshot: it is never before the floor.
		closed := ev.Type == engine.EventSessionClosed
		if (ev.Revision <= m.floor && !closed) || (m.started && !m.w.wants(ev)) {
			continue
		}
		m.add(*ev)
	}
	m.processed = processed
	// A started coalescing member is bounded by its variables instead.
	over := len(m.queue)-m.dead > m.limit && !(m.coalesce && m.started)
	if over {
		m.queue = nil
	}
	grew := len(m.queue) > n
	m.mu.Unlock()
	if over {
		m.end(engine.ErrSlowConsumer)
		return
	}
	if grew {
		m.signal()
	}
}

// start sets the member's snapshot: it keeps the queued events after rev
// that it watches, behind its (filtered) initial values.
func (m *Member) start(rev int64, incarnation string, w watched, initial []engine.Event) {
	m.mu.Lock()
	m.started, m.snap, m.w, m.floor, m.lastRev = true, rev, w, rev, rev
	m.incarnation = incarnation
	queued := m.queue
	m.queue = slices.Clone(initial)
	for i := range queued {
		if ev := &queued[i]; (ev.Revision > rev || ev.Type == engine.EventSessionClosed) && w.wants(ev) {
			m.add(*ev)
		}
	}
	m.limit += len(initial)
	m.mu.Unlock()
	m.signal()
}

// end records why the member ended, once; queued events stay drainable
// (a slow consumer's were dropped by push).
func (m *Member) end(err error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	m.err = err
	m.mu.Unlock()
	close(m.done)
	m.signal()
}

func (m *Member) signal() {
	select {
	case m.ready <- struct{}{}:
	default:
	}
	if m.onReady != nil {
		m.onReady()
	}
}

// Err returns why the member ended, or nil.
func (m *Member) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// SnapshotRevision is the revision of the member's snapshot.
func (m *Member) SnapshotRevision() int64 { return m.snap }

// Ready is signalled when events were queued or the member ended.
func (m *Member) Ready() <-chan struct{} { return m.ready }

// Done is closed when the member has ended.
func (m *Member) Done() <-chan struct{} { return m.done }

// Pending returns how many events wait to be drained.
func (m *Member) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queue) - m.dead
}

// add appends ev to the queue; a started coalescing member first merges a
// waiting value change of the same variable into it, as a coalescing
// engine subscription does (the merged change moves to the end, keeping
// revisions in order; the old entry stays as a zero Event, counted in
// dead, until Drain). With mu held.
func (m *Member) add(ev engine.Event) {
	if m.coalesce && m.started && ev.Type == engine.EventValueChange {
		id := ev.Variable.ID
		if i, ok := m.latest[id]; ok {
			ev = engine.Coalesce(m.queue[i], ev)
			m.queue[i] = engine.Event{}
			m.dead++
		}
		m.latest[id] = len(m.queue)
	}
	m.queue = append(m.queue, ev)
}

// Drain takes every queued event. spare, if not nil, is a slice from an
// earlier Drain the caller has finished with: the member takes it over as
// its queue, and what Drain returns is the caller's, to pass as spare next
// (a buffer passed around so serves a sender's every watch in turn).
func (m *Member) Drain(spare []engine.Event) ([]engine.Event, error) {
	clear(spare)
	m.mu.Lock()
	evs := m.queue
	m.queue = spare[:0]
	err := m.err
	if m.dead > 0 {
		evs = slices.DeleteFunc(evs, func(ev engine.Event) bool { return ev.Type == 0 })
	}
	clear(m.latest)
	m.dead = 0
	m.mu.Unlock()
	if len(evs) == 0 {
		return evs, err
	}
	m.lastRev = max(m.lastRev, evs[len(evs)-1].Revision)
	return evs, nil
}

// Heartbeat is a heartbeat at the revision up to which everything the
// feed processed has been drained.
func (m *Member) Heartbeat(now time.Time) engine.Event {
	m.mu.Lock()
	rev := m.lastRev
	if len(m.queue) == 0 {
		rev = max(rev, m.processed)
	}
	incarnation := m.incarnation
	m.mu.Unlock()
	return engine.Event{Type: engine.EventHeartbeat, Revision: rev, Time: now, Incarnation: incarnation}
}

// Incarnation is the session's incarnation, from the member's snapshot.
func (m *Member) Incarnation() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.incarnation
}

// Close leaves the feed; the last member to leave stops it. Idempotent.
func (m *Member) Close() { m.feeds.leave(m.feed, m) }

// Lagging reports whether the member is falling behind, as
// engine.Subscription.Lagging does.
func (m *Member) Lagging() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.coalesce && m.started {
		return m.dead > 0
	}
	n := len(m.queue) - m.dead
	return m.err == nil && n > 0 && 2*n >= m.limit
}
