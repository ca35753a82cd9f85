package grpcapi

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// decodeResponses unmarshals what a muxResponse built into, per watch id,
// its events in order, rendered as "type@rev name" (updates) or "created" /
// "ended", plus every entry's ids.
func decodeResponses(t *testing.T, msgs [][]byte) (map[int64][]string, [][]int64) {
	t.Helper()
	per := map[int64][]string{}
	var entries [][]int64
	for _, msg := range msgs {
		var resp pb.WatchResponse
		if err := proto.Unmarshal(msg, &resp); err != nil {
			t.Fatalf("a response does not decode: %v", err)
		}
		for _, ev := range resp.GetEvents() {
			var s string
			switch {
			case ev.GetUpdate() != nil:
				u := ev.GetUpdate()
				s = fmt.Sprintf("%s@%d %s", u.GetUpdateType(), u.GetRevision(), u.GetVariable().GetName())
			case ev.GetCreated() != nil:
				s = fmt.Sprintf("created@%d", ev.GetCreated().GetSnapshotRevision())
			case ev.GetEnded() != nil:
				s = fmt.Sprintf("ended %d", ev.GetEnded().GetCode())
			}
			for _, id := range ev.GetWatchIds() {
				per[id] = append(per[id], s)
			}
			entries = append(entries, ev.GetWatchIds())
		}
	}
	return per, entries
}

// TestMuxResponseSharesAndKeepsOrder: events published to several watches
// (one Memo) go in once with all their ids, heartbeats that are the same
// bytes too, and each watch still reads its own events in its order, even
// when one of them has an event the others do not.
func TestMuxResponseSharesAndKeepsOrder(t *testing.T) {
	v := func(name string) *engine.Variable {
		return &engine.Variable{ID: name, Name: name, Type: engine.TypeFloat}
	}
	shared := func(rev int64, name string) engine.Event {
		return engine.Event{Type: engine.EventValueChange, Revision: rev, Variable: v(name), Memo: new(engine.Memo)}
	}
	x3, x4, y5 := shared(3, "x"), shared(4, "x"), shared(5, "y")
	own := engine.Event{Type: engine.EventValueChange, Revision: 2, Variable: v("z")} // no memo: one watcher
	now := time.Now()
	beat := engine.Event{Type: engine.EventHeartbeat, Revision: 5, Time: now, Incarnation: "i"}

	var r muxResponse
	a, b, c := &muxWatch{id: 1}, &muxWatch{id: 2}, &muxWatch{id: 3, view: viewValue}
	d := &muxWatch{id: 4}
	r.updates(a, []engine.Event{x3, x4, y5})
	r.updates(d, []engine.Event{x3, x4, y5})      // the same changes: every entry shared
	r.updates(b, []engine.Event{own, x3, x4, y5}) // z first: x3 cannot join a's entry before it
	r.updates(c, []engine.Event{x3, x4})          // another view: its own entries
	r.updates(a, []engine.Event{beat})
	r.updates(b, []engine.Event{beat})
	per, entries := decodeResponses(t, r.take())

	want := map[int64][]string{
		1: {"value_change@3 x", "value_change@4 x", "value_change@5 y", "heartbeat@5 "},
		2: {"value_change@2 z", "value_change@3 x", "value_change@4 x", "value_change@5 y", "heartbeat@5 "},
		3: {"value_change@3 x", "value_change@4 x"},
		4: {"value_change@3 x", "value_change@4 x", "value_change@5 y"},
	}
	for id, evs := range want {
		if !slices.Equal(per[id], evs) {
			t.Errorf("watch %d reads %v, want %v", id, per[id], evs)
		}
	}
	// b's z comes after all of a's entries, so b's x3, x4 and y5 cannot
	// join a's without jumping ahead of z: b gets its own. The heartbeat
	// comes after everything of both: one entry.
	wantEntries := [][]int64{{1, 4}, {1, 4}, {1, 4}, {2}, {2}, {2}, {2}, {3}, {3}, {1, 2}}
	if fmt.Sprint(entries) != fmt.Sprint(wantEntries) {
		t.Errorf("entries %v, want %v", entries, wantEntries)
	}
}

// TestMuxResponseCutsBetweenRevisions: a large drain is cut into several
// messages, never inside one revision (an atomic set).
func TestMuxResponseCutsBetweenRevisions(t *testing.T) {
	big := engine.String(string(make([]byte, 64<<10)))
	var evs []engine.Event
	for rev := int64(1); rev <= 40; rev++ {
		for _, name := range []string{"a", "b", "c"} { // an atomic set of three per revision
			evs = append(evs, engine.Event{Type: engine.EventValueChange, Revision: rev,
				Variable: &engine.Variable{ID: name, Name: name, Type: engine.TypeString, Value: big}})
		}
	}
	var r muxResponse
	r.updates(&muxWatch{id: 7}, evs)
	msgs := r.take()
	if len(msgs) < 2 {
		t.Fatalf("%d bytes in %d message(s): want them cut", 40*3*(64<<10), len(msgs))
	}
	total := 0
	for i, msg := range msgs {
		if len(msg) > hardBatchBytes {
			t.Errorf("message %d is %d bytes, over %d", i, len(msg), hardBatchBytes)
		}
		var resp pb.WatchResponse
		if err := proto.Unmarshal(msg, &resp); err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetEvents()); n%3 != 0 {
			t.Errorf("message %d holds %d updates: an atomic set was split", i, n)
		}
		total += len(resp.GetEvents())
	}
	if total != len(evs) {
		t.Fatalf("%d updates sent, want %d", total, len(evs))
	}
}

// TestMuxResponseSharesAcrossCuts: watches that lag together share their
// entries even when one watch's backlog fills several messages by itself
// (found in the pipelined-writer benchmark: each watch got the changes in
// messages of its own, so its client decoded every change once per
// watch). Each watch still reads its events once and in order.
func TestMuxResponseSharesAcrossCuts(t *testing.T) {
	big := engine.String(string(make([]byte, 32<<10)))
	var evs []engine.Event
	for rev := int64(1); rev <= 100; rev++ { // about 3 MiB: several messages
		evs = append(evs, engine.Event{Type: engine.EventValueChange, Revision: rev, Memo: new(engine.Memo),
			Variable: &engine.Variable{ID: "x", Name: "x", Type: engine.TypeString, Value: big}})
	}
	var r muxResponse
	a, b := &muxWatch{id: 1}, &muxWatch{id: 2}
	r.updates(a, evs)
	r.updates(b, evs)
	msgs := r.take()
	if len(msgs) < 2 {
		t.Fatalf("%d message(s): want the backlog cut", len(msgs))
	}
	per, entries := decodeResponses(t, msgs)
	for _, ids := range entries {
		if fmt.Sprint(ids) != "[1 2]" {
			t.Fatalf("an entry for watches %v: every change should be shared by both", ids)
		}
	}
	for _, id := range []int64{1, 2} {
		if len(per[id]) != len(evs) {
			t.Fatalf("watch %d reads %d events, want %d", id, len(per[id]), len(evs))
		}
		for i, s := range per[id] {
			if want := fmt.Sprintf("value_change@%d x", i+1); s != want {
				t.Fatalf("watch %d event %d is %q, want %q", id, i, s, want)
			}
		}
	}
	for i, msg := range msgs {
		if len(msg) > hardBatchBytes {
			t.Errorf("message %d is %d bytes, over %d", i, len(msg), hardBatchBytes)
		}
	}
}

// TestMuxResponseJoinsWithinTheHardBound: a join never takes a message
// that was cut already past hardBatchBytes; the watch gets an entry of
// its own in the message being built instead.
func TestMuxResponseJoinsWithinTheHardBound(t *testing.T) {
	ev := engine.Event{Type: engine.EventValueChange, Revision: 1, Memo: new(engine.Memo),
		Variable: &engine.Variable{ID: "x", Name: "x", Type: engine.TypeFloat}}
	var r muxResponse
	r.updates(&muxWatch{id: 1}, []engine.Event{ev})
	r.cut()
	r.sizes[0] = hardBatchBytes // as if the first message were full
	r.updates(&muxWatch{id: 2}, []engine.Event{ev})
	msgs := r.take()
	_, entries := decodeResponses(t, msgs)
	if len(msgs) != 2 || fmt.Sprint(entries) != "[[1] [2]]" {
		t.Fatalf("%d messages, entries %v; want [[1] [2]] in two", len(msgs), entries)
	}
}
