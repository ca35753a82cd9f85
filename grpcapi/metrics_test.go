package grpcapi

import (
	"errors"
	"fmt"
	"maps"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

func TestEndReason(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"ok", nil, EndSessionClosed},
		{"slow consumer", endWith(ReasonSlowConsumer, "x", 1), EndSlowConsumer},
		{"shutdown", endWith(ReasonShuttingDown, "x", 1), EndShutdown},
		{"filter failed", endWith(ReasonFilterFailed, "x", 1), EndFilterFailed},
		{"compacted", toStatus(&engine.CompactedError{Requested: 1, Compacted: 2}), EndCompacted},
		{"limit", toStatus(&engine.LimitError{Limit: LimitWatchStreams, Value: 1}), EndLimit},
		{"canceled", status.Error(codes.Canceled, "x"), EndClientCancel},
		{"deadline", status.Error(codes.DeadlineExceeded, "x"), EndClientCancel},
		{"unavailable", status.Error(codes.Unavailable, "x"), EndShutdown},
		{"not found", toStatus(engine.ErrSessionNotFound), EndRejected},
		{"invalid", invalidf("x"), EndRejected},
		{"internal", errors.New("boom"), EndError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := endReason(tc.err); got != tc.want {
				t.Fatalf("endReason(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

func TestStatsCountDeliveredAndCoalesced(t *testing.T) {
	var st serverStats
	st.sent([]engine.Event{
		{Type: engine.EventValueChange, Revision: 2},
		{Type: engine.EventValueChange, Revision: 5, Coalesced: 3, CoalescedFrom: 3},
		{Type: engine.EventHeartbeat, Revision: 5},
	})
	if st.delivered[engine.EventValueChange].Load() != 2 || st.delivered[engine.EventHeartbeat].Load() != 1 || st.coalesced.Load() != 2 {
		t.Fatalf("value changes %d, heartbeats %d, coalesced %d", st.delivered[engine.EventValueChange].Load(),
			st.delivered[engine.EventHeartbeat].Load(), st.coalesced.Load())
	}
}

// TestServerStats runs watches to their different ends over gRPC and
// checks what Stats counted.
func TestServerStats(t *testing.T) {
	h := newHarness(t, harnessOptions{config: func(c *Config) { c.MaxWatchStreamsPerSession = 2 }})
	h.createSession("s")
	h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)

	closed := h.watch(&pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: true})
	canceled := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
	wantLimit(t, h.watchErr(&pb.WatchVariablesRequest{SessionId: "s"}), LimitWatchStreamsPerSession, "2")
	if got := h.srv.Stats().WatchStreams; got != 2 {
		t.Fatalf("%d watch streams, want 2", got)
	}
	for i := range 3 {
		h.set("s", "a", intV(int64(i+1)))
	}
	for _, want := range []string{"initial_value", "initial_values_complete", "value_change", "value_change", "value_change"} {
		if got := closed.nextData().GetUpdateType(); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	for range 3 {
		if got := canceled.nextData().GetUpdateType(); got != "value_change" {
			t.Fatalf("got %s, want value_change", got)
		}
	}
	canceled.cancel()
	wantCode(t, canceled.end(), codes.Canceled)
	if _, err := h.client.CleanupSession(h.ctx(), &pb.CleanupSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	if got := closed.nextData().GetUpdateType(); got != "session_closed" {
		t.Fatalf("got %s, want session_closed", got)
	}
	if err := closed.end(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the handlers to return", func() bool { return h.srv.ActiveStreams() == 0 })

	st := h.srv.Stats()
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"initial_value", st.Delivered["initial_value"], 1},
		{"initial_values_complete", st.Delivered["initial_values_complete"], 1},
		{"value_change", st.Delivered["value_change"], 3 + 3}, // both streams received all three
		{"session_closed", st.Delivered["session_closed"], 1},
		{"ends session_closed", st.StreamEnds[EndSessionClosed], 1},
		{"ends client_cancel", st.StreamEnds[EndClientCancel], 1},
		{"ends limit", st.StreamEnds[EndLimit], 1},
		{"limit rejections", st.LimitRejections[LimitWatchStreamsPerSession], 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	if st.WatchStreams != 0 || st.LaggingStreams != 0 || len(st.Delivered) != len(UpdateTypes) || len(st.StreamEnds) != len(EndReasons) {
		t.Fatalf("stats %+v", st)
	}
}

// fakeSource is a lagger with fixed answers.
type fakeSource struct {
	engine.Subscription
	pending int
	lagging bool
}

func (f *fakeSource) Pending() int  { return f.pending }
func (f *fakeSource) Lagging() bool { return f.lagging }

// TestStatsListWatchesFurthestBehindFirst: Stats.Watches names each
// running watch's session and RPC with what waits for it, most first,
// and stops at MaxWatchStats; a watch that ended is gone.
func TestStatsListWatchesFurthestBehindFirst(t *testing.T) {
	var st serverStats
	var untrack []func()
	for i := range MaxWatchStats + 10 {
		f := &fakeSource{pending: i, lagging: i >= MaxWatchStats}
		untrack = append(untrack, st.track(f, fmt.Sprint("s", i%3), "Watch"))
	}
	got := st.snapshotWatches(t)
	if len(got) != MaxWatchStats {
		t.Fatalf("%d watches listed, want %d", len(got), MaxWatchStats)
	}
	if got[0].Pending != MaxWatchStats+9 || !got[0].Lagging || got[0].Session != fmt.Sprint("s", (MaxWatchStats+9)%3) || got[0].RPC != "Watch" {
		t.Fatalf("first listed %+v, want the one with %d waiting", got[0], MaxWatchStats+9)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Pending > got[i-1].Pending {
			t.Fatalf("listed out of order: %+v after %+v", got[i], got[i-1])
		}
	}
	for _, u := range untrack[MaxWatchStats-5:] {
		u()
	}
	if got := st.snapshotWatches(t); len(got) != MaxWatchStats-5 || got[0].Pending != MaxWatchStats-6 {
		t.Fatalf("after ending the 15 furthest behind: %d listed, first %+v", len(got), got[0])
	}
}

// snapshotWatches is what Stats lists of st's watches.
func (st *serverStats) snapshotWatches(t *testing.T) []WatchStat {
	t.Helper()
	_, list := st.watches()
	return list
}

// TestStatsListTheWatchesOfEveryRPC: a WatchVariables, a batched and a
// Watch stream's watches are listed with their session and RPC.
func TestStatsListTheWatchesOfEveryRPC(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
	plain := h.watch(&pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: true})
	plain.nextData()
	batched := h.watchBatched(&pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: true})
	batched.next()
	stream, err := h.client.Watch(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 2; id++ {
		if err := stream.Send(&pb.WatchRequest{Request: &pb.WatchRequest_Create{Create: &pb.WatchCreate{WatchId: id,
			Request: &pb.WatchVariablesRequest{SessionId: "s"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "four watches listed", func() bool { return len(h.srv.Stats().Watches) == 4 })
	count := map[string]int{}
	for _, w := range h.srv.Stats().Watches {
		if w.Session != "s" {
			t.Fatalf("watch %+v of another session", w)
		}
		count[w.RPC]++
	}
	if want := map[string]int{"WatchVariables": 1, "WatchVariablesBatched": 1, "Watch": 2}; !maps.Equal(count, want) {
		t.Fatalf("watches by RPC %v, want %v", count, want)
	}
}
