package engine

import (
	"fmt"
	"iter"
)

// history is a session's recent changes, oldest first, so a watch can
// resume from a revision instead of re-reading everything. Owned by the
// loop goroutine. Every revision produces at least one event, so the
// entries cover every revision after compacted, without holes.
//
// The entries are a ring, and a revision's first event is held in its
// entry: most revisions have one event, so a write costs the history no
// allocation at all once the ring has grown to the bounds, and dropping
// the oldest moves nothing (a slice with its dropped prefix reclaimed
// now and then copied the whole history every few thousand writes).
type history struct {
	ring      []histEntry // ring[(head+i)%len(ring)], i < n: the live entries
	head, n   int
	bytes     int   // estimated size of the live entries
	compacted int64 // every revision <= compacted has been dropped
}

// histEntry is every event of one revision, in the order they were made.
type histEntry struct {
	rev   int64
	bytes int
	first histEvent   // the revision's first event
	more  []histEvent // the others (an atomic set's, an upsert's value)
}

// clear zeroes e, so that it keeps nothing alive, writing only the
// pointers that are set: zeroing all 128 bytes at once costs, while the
// collector marks, a barrier for each pointer, nil or not.
func (e *histEntry) clear() {
	e.rev, e.bytes = 0, 0
	f := &e.first
	f.typ, f.bytes = 0, 0
	if f.v != nil {
		f.v = nil
	}
	f.old.clear()
	if f.meta != nil {
		f.meta = nil
	}
	if f.full != nil {
		f.full = nil
	}
	if e.more != nil {
		e.more = nil
	}
}

// events calls fn with each event of the entry, in order.
func (e *histEntry) events(fn func(*histEvent)) {
	fn(&e.first)
	for i := range e.more {
		fn(&e.more[i])
	}
}

// histEvent is one event of the history in 88 bytes rather than an
// Event's 168, since every write leaves one and the history holds
// thousands: a value change's source and time are those of the variable
// it made (Source, UpdatedAt), a registration's time is its CreatedAt,
// and the revision is the entry's, so none is kept twice. An event of
// any other shape (a deletion, at a time of its own) is kept whole in
// full. Immutable once added, like the Event it stands for.
type histEvent struct {
	typ   EventType
	bytes int
	v     *Variable
	old   Value
	meta  map[string]string
	full  *Event // not nil: the event, whole; the other fields are unset
}

// compact returns ev as a histEvent.
func compact(ev *Event) histEvent {
	var h histEvent
	h.compactFrom(ev)
	return h
}

// compactFrom makes the zero h stand for ev, writing only the fields it
// sets.
func (h *histEvent) compactFrom(ev *Event) {
	v := ev.Variable
	plain := v != nil && ev.Coalesced == 0 && ev.CoalescedFrom == 0 && ev.Incarnation == "" && ev.Memo == nil
	switch {
	case plain && ev.Type == EventValueChange && ev.Source == v.Source && ev.Time == v.UpdatedAt,
		plain && ev.Type == EventVariableRegistered && ev.Source == "" && ev.Time == v.CreatedAt:
		h.typ, h.bytes, h.v = ev.Type, ev.bytes, v
		h.old.assign(&ev.OldValue)
		if ev.Metadata != nil {
			h.meta = ev.Metadata
		}
		return
	}
	full := *ev
	h.full = &full
}

// event returns the Event h stands for, of revision rev.
func (h *histEvent) event(rev int64) Event {
	if h.full != nil {
		return *h.full
	}
	ev := Event{Type: h.typ, Revision: rev, Variable: h.v, OldValue: h.old, Metadata: h.meta, bytes: h.bytes}
	if h.typ == EventValueChange {
		ev.Source, ev.Time = h.v.Source, h.v.UpdatedAt
	} else {
		ev.Time = h.v.CreatedAt
	}
	return ev
}

// variable returns the variable of the event h stands for, or nil.
func (h *histEvent) variable() *Variable {
	if h.full != nil {
		return h.full.Variable
	}
	return h.v
}

// CompactedError is the error of a resume from a revision the history no
// longer holds. It wraps ErrCompacted.
type CompactedError struct {
	Requested int64
	// Compacted is the newest dropped revision: resuming from any revision
	// >= Compacted works.
	Compacted int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("engine: revision compacted: start revision %d is older than the history, which holds every change after revision %d; resume from %d or later, or watch again with initial values",
		e.Requested, e.Compacted, e.Compacted)
}

func (e *CompactedError) Unwrap() error { return ErrCompacted }

// add records ev, which belongs to the newest revision. A pointer, not a
// value: an Event is 168 bytes, and a write's event went through three
// copies on its way here.
func (h *history) add(ev *Event) int {
	n := eventSize(ev)
	if h.n > 0 {
		if e := h.at(h.n - 1); e.rev == ev.Revision {
			e.more = append(e.more, compact(ev))
			e.bytes += n
			h.bytes += n
			return n
		}
	}
	if h.n == len(h.ring) {
		h.grow()
	}
	h.n++
	// Field by field into the entry, which is zero (see dropOldest): an
	// entry is 128 bytes, and moving it whole costs, while the collector
	// marks, a barrier for each of its pointers, nil or not.
	e := h.at(h.n - 1)
	e.rev, e.bytes = ev.Revision, n
	e.first.compactFrom(ev)
	h.bytes += n
	return n
}

// addChange is add of the value change of v from old, carrying meta, of
// n bytes at rev, without the Event: the entry add would make (a value
// change's source and time are those of v), written in place.
func (h *history) addChange(rev int64, n int, v *Variable, old *Value, meta map[string]string) {
	if h.n > 0 {
		if e := h.at(h.n - 1); e.rev == rev {
			e.more = append(e.more, histEvent{typ: EventValueChange, bytes: n, v: v, old: *old, meta: meta})
			e.bytes += n
			h.bytes += n
			return
		}
	}
	if h.n == len(h.ring) {
		h.grow()
	}
	h.n++
	e := h.at(h.n - 1) // zero, and written field by field (see add)
	e.rev, e.bytes = rev, n
	f := &e.first
	f.typ, f.bytes, f.v = EventValueChange, n, v
	f.old.assign(old)
	if meta != nil {
		f.meta = meta
	}
	h.bytes += n
}

// at returns the live entry i, oldest first.
func (h *history) at(i int) *histEntry {
	i += h.head
	if i >= len(h.ring) {
		i -= len(h.ring)
	}
	return &h.ring[i]
}

// grow doubles the ring, its live entries first.
func (h *history) grow() {
	ring := make([]histEntry, max(16, 2*len(h.ring)))
	h.copyLive(ring)
	h.ring, h.head = ring, 0
}

// copyLive copies the live entries, oldest first, to dst, which has room.
func (h *history) copyLive(dst []histEntry) {
	tail := min(h.n, len(h.ring)-h.head)
	copy(dst, h.ring[h.head:h.head+tail])
	copy(dst[tail:], h.ring[:h.n-tail])
}

// live returns a copy of the live entries, oldest first.
func (h *history) live() []histEntry {
	entries := make([]histEntry, h.n)
	h.copyLive(entries)
	return entries
}

func (h *history) len() int { return h.n }

// dropOldest removes the oldest revision and returns its size.
func (h *history) dropOldest() int {
	e := h.at(0)
	n := e.bytes
	h.compacted = e.rev
	h.bytes -= n
	e.clear()
	h.head++
	if h.head == len(h.ring) {
		h.head = 0
	}
	h.n--
	return n
}

// since returns the entries after rev, oldest first, or a CompactedError
// if some of them were dropped (and then no entries). The entries are
// the history's own: read them on the loop, before it changes.
func (h *history) since(rev int64) (iter.Seq[*histEntry], error) {
	if rev < h.compacted {
		return func(func(*histEntry) bool) {}, &CompactedError{Requested: rev, Compacted: h.compacted}
	}
	// Revisions are dense and ascending: entry i holds compacted+1+i.
	skip := int(rev - h.compacted)
	return func(yield func(*histEntry) bool) {
		for i := skip; i < h.n; i++ {
			if !yield(h.at(i)) {
				return
			}
		}
	}, nil
}

// record adds ev to s's history and enforces the bounds: per session by
// revisions and bytes, then server-wide by bytes (taking from the largest
// history, so a hot session cannot compact away a quiet one's).
func (st *state) record(s *session, ev *Event) {
	st.recorded(s, s.hist.add(ev))
}

// recordChange is record of a value change (see history.addChange).
func (st *state) recordChange(s *session, rev int64, n int, v *Variable, old *Value, meta map[string]string) {
	s.hist.addChange(rev, n, v, old, meta)
	st.recorded(s, n)
}

// recorded enforces the history bounds once n bytes were added to s's.
func (st *state) recorded(s *session, n int) {
	st.histBytes += n
	for s.hist.len() > 1 && (s.hist.len() > st.cfg.HistoryRevisions || s.hist.bytes > st.cfg.HistoryBytes) {
		st.histBytes -= s.hist.dropOldest()
	}
	if st.histBytes > st.cfg.HistoryTotalBytes {
		st.shrinkLargestHistories()
	}
}

// shrinkLargestHistories drops the oldest revisions of the largest
// histories until the total is 10% under the server-wide bound, so the
// O(sessions) scan runs rarely.
func (st *state) shrinkLargestHistories() {
	target := st.cfg.HistoryTotalBytes - st.cfg.HistoryTotalBytes/10
	for st.histBytes > target {
		var largest *session
		for _, s := range st.sessions {
			if largest == nil || s.hist.bytes > largest.hist.bytes {
				largest = s
			}
		}
		if largest == nil || largest.hist.len() <= 1 {
			return
		}
		for i := 0; i < 64 && largest.hist.len() > 1 && st.histBytes > target; i++ {
			st.histBytes -= largest.hist.dropOldest()
		}
	}
}

// forgetHistory releases a removed session's history from the total.
func (st *state) forgetHistory(s *session) {
	st.histBytes -= s.hist.bytes
	s.hist = history{compacted: s.rev}
}
