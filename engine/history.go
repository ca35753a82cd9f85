package engine

import "fmt"

// history is a session's recent changes, oldest first, so a watch can
// resume from a revision instead of re-reading everything. Owned by the
// loop goroutine. Every revision produces at least one event, so the
// entries cover every revision after compacted, without holes.
type history struct {
	entries   []histEntry // entries[head:] are live
	head      int
	bytes     int   // estimated size of the live entries
	compacted int64 // every revision <= compacted has been dropped
	// slab is where the next revisions' events go: most revisions have one
	// event, and a slice of their own each was an allocation per write.
	slab []histEvent
}

// histSlab is how many events one slab holds.
const histSlab = 64

// histEntry is every event of one revision, in the order they were made.
type histEntry struct {
	rev    int64
	events []histEvent
	bytes  int
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
	v := ev.Variable
	plain := v != nil && ev.Coalesced == 0 && ev.CoalescedFrom == 0 && ev.Incarnation == "" && ev.Memo == nil
	switch {
	case plain && ev.Type == EventValueChange && ev.Source == v.Source && ev.Time == v.UpdatedAt,
		plain && ev.Type == EventVariableRegistered && ev.Source == "" && ev.Time == v.CreatedAt:
		return histEvent{typ: ev.Type, bytes: ev.bytes, v: v, old: ev.OldValue, meta: ev.Metadata}
	}
	full := *ev
	return histEvent{full: &full}
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
	n := ev.bytes
	if n == 0 {
		n = eventSize(*ev)
	}
	if last := len(h.entries) - 1; last >= h.head && h.entries[last].rev == ev.Revision {
		e := &h.entries[last]
		e.events = append(e.events, compact(ev))
		e.bytes += n
	} else {
		if len(h.slab) == cap(h.slab) {
			h.slab = make([]histEvent, 0, histSlab)
		}
		h.slab = append(h.slab, compact(ev))
		// Capped at one: a second event of the revision (an upsert's
		// registration, then its value) moves it out of the slab.
		one := h.slab[len(h.slab)-1 : len(h.slab) : len(h.slab)]
		h.entries = append(h.entries, histEntry{rev: ev.Revision, events: one, bytes: n})
	}
	h.bytes += n
	return n
}

func (h *history) len() int { return len(h.entries) - h.head }

// dropOldest removes the oldest revision and returns its size.
func (h *history) dropOldest() int {
	e := &h.entries[h.head]
	n := e.bytes
	h.compacted = e.rev
	h.bytes -= n
	*e = histEntry{}
	h.head++
	if h.head > 1024 && h.head > len(h.entries)/2 { // reclaim the dropped prefix
		h.entries = append(h.entries[:0], h.entries[h.head:]...)
		h.head = 0
	}
	return n
}

// since returns the entries after rev, or a CompactedError if some of them
// were dropped.
func (h *history) since(rev int64) ([]histEntry, error) {
	if rev < h.compacted {
		return nil, &CompactedError{Requested: rev, Compacted: h.compacted}
	}
	live := h.entries[h.head:]
	// Revisions are dense and ascending: entry i holds compacted+1+i.
	skip := int(rev - h.compacted)
	if skip >= len(live) {
		return nil, nil
	}
	return live[skip:], nil
}

// record adds ev to s's history and enforces the bounds: per session by
// revisions and bytes, then server-wide by bytes (taking from the largest
// history, so a hot session cannot compact away a quiet one's).
func (st *state) record(s *session, ev *Event) {
	n := s.hist.add(ev)
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
