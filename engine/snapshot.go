package engine

import (
	"bufio"
	"container/heap"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// snapshotVersion is the first field of a snapshot; a reader refuses any
// other.
const snapshotVersion = 1

// image is a copy of the state taken on the loop, to be encoded elsewhere.
// It shares what is immutable (Variables, Values, the events of a past
// revision) and copies the rest.
type image struct {
	sessions []sessionImage
}

type sessionImage struct {
	id, owner, incarnation string
	metadata               map[string]string
	createdAt, lastUsed    time.Time
	expiresAt              time.Time
	ttl                    time.Duration
	rev, nextID            int64
	vars                   []*Variable // sorted by id
	compacted              int64
	hist                   []histEntry // each entry's events capped to their length now
}

// capture copies st into an image. It runs on the loop and costs a few
// pointer copies per variable and per history revision.
func (st *state) capture() *image {
	img := &image{sessions: make([]sessionImage, 0, len(st.sessions))}
	for _, s := range st.sessions {
		si := sessionImage{
			id: s.id, owner: s.owner, incarnation: s.incarnation,
			metadata:  s.metadata, // never changed after creation
			createdAt: s.createdAt, lastUsed: s.lastUsed, expiresAt: s.expiresAt,
			ttl: s.ttl, rev: s.rev, nextID: s.nextID,
			vars:      make([]*Variable, 0, len(s.vars)),
			compacted: s.hist.compacted,
			hist:      s.hist.live(),
		}
		for _, slot := range s.vars {
			si.vars = append(si.vars, slot.cur)
		}
		for i := range si.hist {
			// The newest entry may still grow in place; its prefix is ours.
			more := si.hist[i].more
			si.hist[i].more = more[:len(more):len(more)]
		}
		img.sessions = append(img.sessions, si)
	}
	return img
}

// write encodes img to w. It may run on any goroutine.
func (img *image) write(w io.Writer) error {
	slices.SortFunc(img.sessions, func(a, b sessionImage) int { return strings.Compare(a.id, b.id) })
	bw := bufio.NewWriterSize(w, 1<<20)
	e := &encoder{}
	e.uvarint(snapshotVersion)
	e.uvarint(uint64(len(img.sessions)))
	for i := range img.sessions {
		s := &img.sessions[i]
		e.string(s.id)
		e.string(s.owner)
		e.string(s.incarnation)
		e.metadata(s.metadata)
		e.time(s.createdAt)
		e.time(s.lastUsed)
		e.time(s.expiresAt)
		e.varint(int64(s.ttl))
		e.varint(s.rev)
		e.varint(s.nextID)
		slices.SortFunc(s.vars, func(a, b *Variable) int { return strings.Compare(a.ID, b.ID) })
		e.uvarint(uint64(len(s.vars)))
		for _, v := range s.vars {
			e.variable(v)
		}
		e.varint(s.compacted)
		e.uvarint(uint64(len(s.hist)))
		for _, h := range s.hist {
			e.varint(h.rev)
			e.uvarint(uint64(1 + len(h.more)))
			h.events(func(he *histEvent) { e.event(he.event(h.rev)) })
			if len(e.buf) > 1<<20 { // keep the buffer small for big states
				if _, err := bw.Write(e.buf); err != nil {
					return err
				}
				e.buf = e.buf[:0]
			}
		}
	}
	if _, err := bw.Write(e.buf); err != nil {
		return err
	}
	return bw.Flush()
}

// event encodes a history event: the fields a resumed watch is sent.
func (e *encoder) event(ev Event) {
	e.uvarint(uint64(ev.Type))
	e.varint(ev.Revision)
	e.bool(ev.Variable != nil)
	if ev.Variable != nil {
		e.variable(ev.Variable)
	}
	e.value(ev.OldValue)
	e.string(ev.Source)
	e.metadata(ev.Metadata)
	e.time(ev.Time)
	e.string(ev.Incarnation)
}

func (d *decoder) event() Event {
	ev := Event{Type: EventType(d.uvarint()), Revision: d.varint()}
	if d.bool() {
		ev.Variable = d.variable()
	}
	ev.OldValue = d.value()
	ev.Source = d.string()
	ev.Metadata = d.metadata()
	ev.Time = d.time()
	ev.Incarnation = d.string()
	return ev
}

// restore replaces st's sessions with those of a snapshot. It runs before
// the loop starts.
func (st *state) restore(r io.Reader) error {
	buf, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	d := &decoder{buf: buf}
	if v := d.uvarint(); v != snapshotVersion {
		return fmt.Errorf("%w: snapshot version %d (this server reads %d)", errCorrupt, v, snapshotVersion)
	}
	n := d.length(8)
	for range n {
		if err := st.restoreSession(d); err != nil {
			return err
		}
	}
	if d.err == nil && len(d.buf) != 0 {
		return fmt.Errorf("%w: %d bytes after the snapshot", errCorrupt, len(d.buf))
	}
	return d.err
}

func (st *state) restoreSession(d *decoder) error {
	req := CreateSessionRequest{ID: d.string(), Owner: d.string(), Incarnation: d.string(), Metadata: d.metadata()}
	createdAt, lastUsed, expiresAt := d.time(), d.time(), d.time()
	ttl := time.Duration(d.varint())
	s := newSession(req, ttl, createdAt)
	s.lastUsed, s.expiresAt = lastUsed, expiresAt
	s.rev, s.nextID = d.varint(), d.varint()
	s.published.Store(s.rev)
	// What the snapshot does not hold is derived again, as register and
	// createSession count it: the owner's usage, the metadata bytes (the
	// variables' stats come with decoder.variable), the tenant charges.
	st.own(s)
	s.metaBytes = statsOf(s.metadata).bytes
	nvars := d.length(8)
	for range nvars {
		v := d.variable()
		if d.err != nil {
			return d.err
		}
		cc, err := compileConstraints(v.Type, *v.Constraints)
		if err != nil {
			return fmt.Errorf("%w: variable %q of session %q: %v", errCorrupt, v.Name, s.id, err)
		}
		v.Constraints = &cc.Constraints
		seq, err := strconv.ParseInt(v.ID, 10, 64) // ids are the registration sequence
		if err != nil {
			return fmt.Errorf("%w: variable %q of session %q has id %q", errCorrupt, v.Name, s.id, v.ID)
		}
		slot := newSlot(v, cc, seq)
		s.vars[v.ID] = slot
		s.names[v.Name] = slot
		s.metaBytes += v.meta.bytes
		s.usage.variables++
		s.recharge(slot, ValueBytes(v.Value))
	}
	s.hist.compacted = d.varint()
	nhist := d.length(2)
	for range nhist {
		rev := d.varint()
		nev := d.length(4)
		for range nev {
			ev := d.event()
			ev.Revision = rev
			ev.bytes = eventSize(&ev) // cached, as record does
			st.histBytes += s.hist.add(&ev)
		}
	}
	if d.err != nil {
		return d.err
	}
	if _, dup := st.sessions[s.id]; dup {
		return fmt.Errorf("%w: session %q twice in the snapshot", errCorrupt, s.id)
	}
	st.sessions[s.id] = s
	heap.Push(&st.expiries, expiryEntry{at: s.expiresAt, s: s})
	st.counts.variables += int64(len(s.vars))
	return nil
}
