package grpcapi

import (
	"testing"
	"time"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// live reports whether session id is listed (ListSessions expires what is
// due, and is no use of a session).
func (h *harness) live(id string) bool {
	h.t.Helper()
	resp, err := h.client.ListSessions(h.ctx(), &pb.ListSessionsRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, s := range resp.GetSessions() {
		if s.GetId() == id {
			return true
		}
	}
	return false
}

// TestWatchKeepsSessionAliveOverGRPC: a session watched by a
// WatchVariables stream, or by a watch of a Watch stream that sees only
// heartbeats, outlives its TTL many times; each expires one TTL after its
// watch ends.
func TestWatchKeepsSessionAliveOverGRPC(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, harnessOptions{engine: engine.Config{Now: clock.Now, SessionTTL: 10 * time.Second}})
	h.createSession("plain")
	h.register("plain", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	h.createSession("muxed")
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "plain"})
	m := h.openMux()
	mw := m.create(1, &pb.WatchVariablesRequest{SessionId: "muxed"}, 0)
	mw.created()
	for range 3 {
		clock.Advance(25 * time.Second)
		if !h.live("plain") || !h.live("muxed") {
			t.Fatal("a watched session expired")
		}
	}
	v := h.set("plain", "x", floatV(1)).GetVariable().GetVersion()
	if u := w.nextData(); u.GetUpdateType() != "value_change" || u.GetVariable().GetVersion() != v {
		t.Fatalf("the kept-alive watch got %v", u)
	}

	w.cancel()
	waitFor(t, "the watch stream to end", func() bool { return h.srv.ActiveStreams() == 1 })
	mw.cancel()
	mw.ended()
	clock.Advance(10*time.Second - time.Millisecond)
	if !h.live("plain") || !h.live("muxed") {
		t.Fatal("a session expired before a TTL had passed since its watch ended")
	}
	clock.Advance(time.Millisecond)
	if h.live("plain") || h.live("muxed") {
		t.Fatal("a session outlived its last watch by a TTL")
	}
}

// TestExpireWatchedSessionsOverGRPC: with the keep-alive off, a watched
// session expires by its TTL and its stream ends as it always did:
// session_closed, then OK.
func TestExpireWatchedSessionsOverGRPC(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, harnessOptions{engine: engine.Config{Now: clock.Now, SessionTTL: 10 * time.Second, ExpireWatchedSessions: true}})
	h.createSession("s")
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
	clock.Advance(10 * time.Second)
	if h.live("s") {
		t.Fatal("a watched session outlived its TTL with ExpireWatchedSessions")
	}
	if u := w.nextData(); u.GetUpdateType() != "session_closed" {
		t.Fatalf("got %v, want session_closed", u)
	}
	if err := w.end(); err != nil {
		t.Fatalf("stream ended with %v, want OK", err)
	}
}

// TestFilteredWatchKeepsSessionAlive: a filtered stream's session is
// watched by its chain's feed, which lives as long as one of its streams.
func TestFilteredWatchKeepsSessionAlive(t *testing.T) {
	clock := newFakeClock()
	h, _ := newFilterHarness(t, harnessOptions{engine: engine.Config{Now: clock.Now, SessionTTL: 10 * time.Second}}, nil, testPlugin("deadband"))
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("deadband", "threshold", "0.5")}})
	clock.Advance(25 * time.Second)
	if !h.live("s") {
		t.Fatal("a session watched through a filter expired")
	}
	w.cancel()
	// The feed lets go of its subscription on its own time after the
	// stream ends: each round moves the clock a TTL on.
	waitFor(t, "the session to expire once its filtered watch ended", func() bool {
		clock.Advance(10 * time.Second)
		return !h.live("s")
	})
}
