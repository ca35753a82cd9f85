package grpcapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
)

// WatchEvent fields that carry an event (bridge.proto).
const (
	fieldUpdate  protowire.Number = 2
	fieldCreated protowire.Number = 3
	fieldEnded   protowire.Number = 4
)

// muxResponse builds a multiplexed stream's WatchResponse messages.
//
// A change several watches of the stream want goes in once, with all
// their ids: events published to several subscriptions share an
// engine.Memo, which identifies the change, and heartbeats that are the
// same bytes (one session's watches at one tick) share an entry too. An
// event joins an existing entry only if that entry comes after the
// watch's own last one, so every watch's events stay in its order: watches
// that want the same changes share every entry, and one that wants more
// simply gets entries of its own.
//
// Messages are cut at MaxBatchBytes between one watch's revisions (never
// inside an atomic set, as WatchVariablesBatched does), or at
// hardBatchBytes wherever that falls.
//
// A cut only marks where a message ends: the messages of a round are
// encoded when the round takes them, so a watch drained after the cut can
// still join the entries of a message before it. Without that, watches
// that lag together would share nothing once one watch's backlog filled a
// message by itself: each would get the same changes in messages of its
// own, and its client would decode each change once per watch.
//
// # Notes
//
// Owned by the mux's sender goroutine.
type muxResponse struct {
	entries []muxEntry                             // of every message of the round, in order
	starts  []int                                  // where each message after the first begins in entries
	sizes   []int                                  // estimated encoded size of each message cut so far
	bytes   int                                    // the same for the message being built
	gen     int                                    // counts rounds: a watch's last entry index is per round
	byMemo  [engine.MemoSlots]map[*engine.Memo]int // per view: a pointer key hashes fast
	byBytes map[string]int
	arena   []byte // encodings of events without a memo, reused each round
	// observe, when set, observes the entries of every message.
	observe prometheus.Observer
}

// muxEntry is one WatchEvent: its ids, and its event encoded as a message
// field 1 (framed); the tag byte is rewritten to field's when encoded.
type muxEntry struct {
	ids   []int64
	body  []byte
	field protowire.Number
	msg   int // the message it is in: an index of starts, or len(starts) for the one being built
}

// updates adds the events w drained, in order.
func (r *muxResponse) updates(w *muxWatch, evs []engine.Event) {
	for i := range evs {
		ev := &evs[i]
		if r.bytes > hardBatchBytes || (i > 0 && r.bytes > MaxBatchBytes && cuttable(evs[i-1], *ev)) {
			r.cut()
		}
		last := -1
		if w.lastGen == r.gen+1 {
			last = w.lastIdx
		}
		var body []byte
		switch {
		case ev.Memo != nil:
			byMemo := r.byMemo[w.view]
			if j, ok := byMemo[ev.Memo]; ok && j > last && r.join(w, j) {
				continue
			}
			body = framed(ev, w.view)
			if byMemo == nil {
				byMemo = map[*engine.Memo]int{}
				r.byMemo[w.view] = byMemo
			}
			byMemo[ev.Memo] = len(r.entries)
		case ev.Type == engine.EventHeartbeat:
			start := len(r.arena)
			r.arena = appendFramed(r.arena, ev, w.view)
			body = r.arena[start:len(r.arena):len(r.arena)]
			if j, ok := r.byBytes[string(body)]; ok && j > last && r.join(w, j) {
				r.arena = r.arena[:start]
				continue
			}
			if r.byBytes == nil {
				r.byBytes = map[string]int{}
			}
			r.byBytes[string(body)] = len(r.entries)
		default:
			start := len(r.arena)
			r.arena = appendFramed(r.arena, ev, w.view)
			body = r.arena[start:len(r.arena):len(r.arena)]
		}
		r.add(w, body, fieldUpdate)
	}
}

// control adds a created or ended event of w.
func (r *muxResponse) control(w *muxWatch, field protowire.Number, msg proto.Message) {
	b, _ := proto.Marshal(msg) // our own messages: they always marshal
	r.add(w, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), b), field)
}

func (r *muxResponse) add(w *muxWatch, body []byte, field protowire.Number) {
	r.entries = append(r.entries, muxEntry{ids: []int64{w.id}, body: body, field: field, msg: len(r.starts)})
	r.bytes += len(body) + 16
	w.lastGen, w.lastIdx = r.gen+1, len(r.entries)-1
}

// join adds w's id to entry j, unless that would take an earlier message
// past hardBatchBytes (then w gets an entry of its own).
func (r *muxResponse) join(w *muxWatch, j int) bool {
	n := protowire.SizeVarint(uint64(w.id))
	if m := r.entries[j].msg; m < len(r.starts) {
		if r.sizes[m]+n > hardBatchBytes {
			return false
		}
		r.sizes[m] += n
	} else {
		r.bytes += n
	}
	r.entries[j].ids = append(r.entries[j].ids, w.id)
	w.lastGen, w.lastIdx = r.gen+1, j
	return true
}

// cut ends the message being built.
func (r *muxResponse) cut() {
	begun := 0 // where the message being built begins
	if n := len(r.starts); n > 0 {
		begun = r.starts[n-1]
	}
	if len(r.entries) == begun {
		return
	}
	r.starts = append(r.starts, len(r.entries))
	r.sizes = append(r.sizes, r.bytes)
	r.bytes = 0
}

// take encodes the messages of the round, the last one cut now, and
// starts the next round.
func (r *muxResponse) take() [][]byte {
	r.cut()
	msgs := make([][]byte, 0, len(r.starts))
	from := 0
	for m, end := range r.starts {
		msgs = append(msgs, encodeEntries(r.entries[from:end], r.sizes[m]))
		if r.observe != nil {
			r.observe.Observe(float64(end - from))
		}
		from = end
	}
	clear(r.entries)
	r.entries, r.starts, r.sizes = r.entries[:0], r.starts[:0], r.sizes[:0]
	r.gen++
	for _, m := range r.byMemo {
		clear(m)
	}
	clear(r.byBytes)
	r.arena = r.arena[:0] // its bytes were copied into the messages
	return msgs
}

// encodeEntries encodes entries as one WatchResponse of about size bytes.
func encodeEntries(entries []muxEntry, size int) []byte {
	buf := make([]byte, 0, size)
	for i := range entries {
		e := &entries[i]
		idsLen := 0
		for _, id := range e.ids {
			idsLen += protowire.SizeVarint(uint64(id))
		}
		payload := e.body[1:] // length prefix and message, behind field 1's tag
		evLen := 1 + protowire.SizeVarint(uint64(idsLen)) + idsLen + 1 + len(payload)
		buf = protowire.AppendTag(buf, 1, protowire.BytesType) // WatchResponse.events
		buf = protowire.AppendVarint(buf, uint64(evLen))
		buf = protowire.AppendTag(buf, 1, protowire.BytesType) // WatchEvent.watch_ids, packed
		buf = protowire.AppendVarint(buf, uint64(idsLen))
		for _, id := range e.ids {
			buf = protowire.AppendVarint(buf, uint64(id))
		}
		buf = protowire.AppendTag(buf, e.field, protowire.BytesType)
		buf = append(buf, payload...)
	}
	return buf
}
