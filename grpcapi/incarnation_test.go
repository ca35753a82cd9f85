package grpcapi

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// TestWatchRefusesAnotherIncarnation: a session deleted and created again
// under the same id starts its revisions over. A watch that names the old
// incarnation is FAILED_PRECONDITION with SESSION_INCARNATION_CHANGED,
// never the new session's changes as if they continued the old ones; the
// streams, the session RPCs and the updates that say where a stream stands
// all carry the incarnation.
func TestWatchRefusesAnotherIncarnation(t *testing.T) {
	h, _ := newFilterHarness(t, harnessOptions{}, nil, testPlugin("passthrough"))
	first, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: "s"})
	if err != nil {
		t.Fatal(err)
	}
	old := first.GetSession().GetIncarnation()
	if old == "" {
		t.Fatal("InitializeSession answered no incarnation")
	}
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), nil)
	h.set("s", "x", floatV(2))

	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: true, Incarnation: old})
	w.next() // x
	if u := w.next(); u.GetUpdateType() != "initial_values_complete" || u.GetIncarnation() != old {
		t.Fatalf("got %v, want initial_values_complete with incarnation %q", u, old)
	}

	if _, err := h.client.CleanupSession(h.ctx(), &pb.CleanupSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	if u := w.next(); u.GetUpdateType() != "session_closed" || u.GetIncarnation() != old {
		t.Fatalf("got %v, want session_closed with incarnation %q", u, old)
	}
	second, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: "s"})
	if err != nil {
		t.Fatal(err)
	}
	cur := second.GetSession().GetIncarnation()
	if cur == old || cur == "" {
		t.Fatalf("recreated session has incarnation %q, the first %q", cur, old)
	}
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(10), nil)
	for i := range 5 {
		h.set("s", "x", floatV(float64(11+i)))
	}

	refused := []*pb.WatchVariablesRequest{
		{SessionId: "s", StartRevision: proto.Int64(2), Incarnation: old},   // passed by the new session
		{SessionId: "s", StartRevision: proto.Int64(100), Incarnation: old}, // ahead of it
		{SessionId: "s", IncludeInitialValues: true, Incarnation: old},
		{SessionId: "s", IncludeInitialValues: true, Incarnation: old, Filters: []*pb.FilterSpec{filter("passthrough")}},
	}
	for _, req := range refused {
		err := h.watchErr(req)
		wantCode(t, err, codes.FailedPrecondition)
		info := errorInfo(t, err)
		if info.GetReason() != ReasonIncarnationChanged || info.GetMetadata()["current_incarnation"] != cur ||
			info.GetMetadata()["requested_incarnation"] != old || info.GetMetadata()["session_id"] != "s" {
			t.Fatalf("watch %v: ErrorInfo %v, want %s with current %q, requested %q", req, info, ReasonIncarnationChanged, cur, old)
		}
	}

	got, err := h.client.GetSession(h.ctx(), &pb.GetSessionRequest{SessionId: "s"})
	if err != nil || got.GetSession().GetIncarnation() != cur {
		t.Fatalf("GetSession: %v, %v; want incarnation %q", got, err, cur)
	}
	hb, err := h.client.Heartbeat(h.ctx(), &pb.HeartbeatRequest{SessionId: "s"})
	if err != nil || hb.GetIncarnation() != cur {
		t.Fatalf("Heartbeat: %v, %v; want incarnation %q", hb, err, cur)
	}

	// The current incarnation resumes; the greeting heartbeat and the
	// header carry it, for plain and filtered watches alike.
	for _, filters := range [][]*pb.FilterSpec{nil, {filter("passthrough")}} {
		stream, err := h.client.WatchVariables(h.ctx(), &pb.WatchVariablesRequest{SessionId: "s", Incarnation: cur, Filters: filters})
		if err != nil {
			t.Fatal(err)
		}
		md, err := stream.Header()
		if err != nil {
			t.Fatal(err)
		}
		if got := md.Get(IncarnationHeader); len(got) != 1 || got[0] != cur {
			t.Fatalf("header %s = %v, want [%s]", IncarnationHeader, got, cur)
		}
		u, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if u.GetUpdateType() != "heartbeat" || u.GetIncarnation() != cur {
			t.Fatalf("greeting %v, want a heartbeat with incarnation %q", u, cur)
		}
	}
	resumed := h.watch(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(2), Incarnation: cur})
	resumed.next() // the greeting heartbeat at 2
	if u := resumed.nextData(); u.GetUpdateType() != "value_change" || u.GetRevision() != 3 {
		t.Fatalf("first resumed change %v, want the value_change at revision 3", u)
	}
}
