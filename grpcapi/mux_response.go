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
// # Notes
//
// Owned by the mux's sender goroutine.
type muxResponse struct {
	entries []muxEntry
	bytes   int // an estimate of the encoded size of entries
	gen     int // counts cuts: a watch's last entry index is per generation
	byMemo  map[memoKey]int
	byBytes map[string]int
	arena   []byte // encodings of events without a memo, reused after each cut
	msgs    [][]byte
	// sizes, when set, observes the entries of every response cut.
	sizes prometheus.Observer
}

// muxEntry is one WatchEvent: its ids, and its event encoded as a message
// field 1 (framed); the tag byte is rewritten to field's when encoded.
type muxEntry struct {
	ids   []int64
	body  []byte
	field protowire.Number
}

type memoKey struct {
	memo *engine.Memo
	view view
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
			k := memoKey{ev.Memo, w.view}
			if j, ok := r.byMemo[k]; ok && j > last {
				r.join(w, j)
				continue
			}
			body = framed(ev, w.view)
			if r.byMemo == nil {
				r.byMemo = map[memoKey]int{}
			}
			r.byMemo[k] = len(r.entries)
		case ev.Type == engine.EventHeartbeat:
			start := len(r.arena)
			r.arena = appendFramed(r.arena, ev, w.view)
			body = r.arena[start:len(r.arena):len(r.arena)]
			if j, ok := r.byBytes[string(body)]; ok && j > last {
				r.arena = r.arena[:start]
				r.join(w, j)
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
	r.entries = append(r.entries, muxEntry{ids: []int64{w.id}, body: body, field: field})
	r.bytes += len(body) + 16
	w.lastGen, w.lastIdx = r.gen+1, len(r.entries)-1
}

func (r *muxResponse) join(w *muxWatch, j int) {
	r.entries[j].ids = append(r.entries[j].ids, w.id)
	r.bytes += protowire.SizeVarint(uint64(w.id))
	w.lastGen, w.lastIdx = r.gen+1, j
}

// cut encodes the entries as one WatchResponse and starts the next.
func (r *muxResponse) cut() {
	if len(r.entries) == 0 {
		return
	}
	buf := make([]byte, 0, r.bytes)
	for i := range r.entries {
		e := &r.entries[i]
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
		*e = muxEntry{}
	}
	r.msgs = append(r.msgs, buf)
	if r.sizes != nil {
		r.sizes.Observe(float64(len(r.entries)))
	}
	r.entries = r.entries[:0]
	r.bytes = 0
	r.gen++
	clear(r.byMemo)
	clear(r.byBytes)
	r.arena = r.arena[:0] // its bytes were copied into buf
}

// take returns the messages built so far, the last one cut now.
func (r *muxResponse) take() [][]byte {
	r.cut()
	msgs := r.msgs
	r.msgs = nil
	return msgs
}
