package grpcapi

import (
	"errors"
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
