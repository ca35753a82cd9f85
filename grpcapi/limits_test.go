package grpcapi

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// wantLimit fails unless err is RESOURCE_EXHAUSTED naming limit in its
// message, an ErrorInfo (LIMIT_EXCEEDED, limit, value) and a QuotaFailure.
func wantLimit(t *testing.T, err error, limit, value string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), limit) {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED naming %s", err, limit)
	}
	var info, quota bool
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d.GetReason() == ReasonLimitExceeded && d.GetDomain() == ErrorDomain &&
				d.GetMetadata()["limit"] == limit && d.GetMetadata()["value"] == value
		case *errdetails.QuotaFailure:
			quota = len(d.GetViolations()) == 1 && d.GetViolations()[0].GetSubject() == limit
		}
	}
	if !info || !quota {
		t.Fatalf("details of %v: %v (want ErrorInfo %s %s=%s and QuotaFailure)", err, st.Details(), ReasonLimitExceeded, limit, value)
	}
}

// stateOf describes every session and its variables, to compare before
// and after a refused request.
func (h *harness) stateOf() string {
	h.t.Helper()
	ss, err := h.client.ListSessions(h.ctx(), &pb.ListSessionsRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	var b strings.Builder
	for _, s := range ss.GetSessions() {
		vs, err := h.client.ListVariables(h.ctx(), &pb.ListVariablesRequest{SessionId: s.GetId()})
		if err != nil {
			h.t.Fatal(err)
		}
		b.WriteString(s.GetId() + "@" + vs.String() + "\n")
	}
	return b.String()
}

func TestLimitsOverGRPC(t *testing.T) {
	big := strV("123456789") // over max_value_bytes: 8
	watch := func(session string, idents ...string) *pb.WatchVariablesRequest {
		return &pb.WatchVariablesRequest{SessionId: session, VariableIdentifiers: idents}
	}
	tests := []struct {
		name         string
		do           func(h *harness) error // on sessions s {a, b} and t {}
		limit, value string
	}{
		{"InitializeSession", func(h *harness) error {
			_, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: "u"})
			return err
		}, engine.LimitSessions, "2"},
		{"RegisterVariable", func(h *harness) error {
			_, err := h.client.RegisterVariable(h.ctx(), &pb.RegisterVariableRequest{SessionId: "s", Name: "c",
				Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: intV(1)})
			return err
		}, engine.LimitVariablesPerSession, "2"},
		{"RegisterVariable with a big value", func(h *harness) error {
			_, err := h.client.RegisterVariable(h.ctx(), &pb.RegisterVariableRequest{SessionId: "t", Name: "c",
				Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: big})
			return err
		}, engine.LimitValueBytes, "8"},
		{"SetVariable", func(h *harness) error {
			_, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "b", Value: big})
			return err
		}, engine.LimitValueBytes, "8"},
		{"atomic SetVariables", func(h *harness) error {
			_, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
				{VariableIdentifier: "a", Value: intV(5)}, {VariableIdentifier: "b", Value: big}}})
			return err
		}, engine.LimitValueBytes, "8"},
		{"SetVariables with too many updates", func(h *harness) error {
			_, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Updates: []*pb.SetVariableRequest{
				{VariableIdentifier: "a", Value: intV(5)}, {VariableIdentifier: "a", Value: intV(6)}, {VariableIdentifier: "a", Value: intV(7)}}})
			return err
		}, LimitRequestIdentifiers, "2"},
		{"GetVariables", func(h *harness) error {
			_, err := h.client.GetVariables(h.ctx(), &pb.GetVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"a", "b", "a"}})
			return err
		}, LimitRequestIdentifiers, "2"},
		{"WatchVariables with too many identifiers", func(h *harness) error {
			return h.watchErr(watch("s", "a", "b", "a"))
		}, LimitRequestIdentifiers, "2"},
		{"watch streams of a session", func(h *harness) error {
			h.watch(watch("s"))
			h.watch(watch("s"))
			return h.watchErr(watch("s"))
		}, LimitWatchStreamsPerSession, "2"},
		{"watch streams of the server", func(h *harness) error {
			h.watch(watch("s"))
			h.watch(watch("s"))
			h.watch(watch("t"))
			return h.watchErr(watch("t"))
		}, LimitWatchStreams, "3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{
				engine: engine.Config{MaxSessions: 2, MaxVariablesPerSession: 2, MaxValueBytes: 8},
				config: func(c *Config) {
					c.MaxWatchStreams, c.MaxWatchStreamsPerSession, c.MaxRequestIdentifiers = 3, 2, 2
				},
			})
			h.createSession("s")
			h.createSession("t")
			h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
			h.register("s", "b", pb.VariableType_VARIABLE_TYPE_STRING, strV(""), nil)
			before := h.stateOf()

			wantLimit(t, tc.do(h), tc.limit, tc.value)

			if after := h.stateOf(); after != before {
				t.Fatalf("state changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestWatchStreamSlotsAreReleased: a stream that ends gives its slot back,
// and a refused one takes none.
func TestWatchStreamSlotsAreReleased(t *testing.T) {
	h := newHarness(t, harnessOptions{config: func(c *Config) { c.MaxWatchStreams, c.MaxWatchStreamsPerSession = 1, -1 }})
	h.createSession("s")
	for i := range 3 {
		w := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
		wantLimit(t, h.watchErr(&pb.WatchVariablesRequest{SessionId: "s"}), LimitWatchStreams, "1")
		w.cancel()
		wantCode(t, w.end(), codes.Canceled)
		waitFor(t, "the handlers to return", func() bool { return h.srv.ActiveStreams() == 0 })
		if got := h.srv.Stats().LimitRejections[LimitWatchStreams]; got != uint64(i+1) {
			t.Fatalf("round %d: %d rejections", i, got)
		}
	}
}

func TestLimitDefaults(t *testing.T) {
	srv := New(Config{Backend: &recordingBackend{}})
	if srv.slots.max != DefaultMaxWatchStreams || srv.slots.perSession != DefaultMaxWatchStreamsPerSession || srv.maxIdents != DefaultMaxRequestIdentifiers {
		t.Fatalf("defaults: %d %d %d", srv.slots.max, srv.slots.perSession, srv.maxIdents)
	}
	srv = New(Config{Backend: &recordingBackend{}, MaxWatchStreams: -1, MaxWatchStreamsPerSession: -1, MaxRequestIdentifiers: -1})
	if err := srv.checkIdentifiers(1<<20, "x"); err != nil {
		t.Fatal(err)
	}
	release, err := srv.acquireStream(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if MinMaxSendMsgSize < hardBatchBytes || MinMaxSendMsgSize < MaxBatchBytes {
		t.Fatalf("MinMaxSendMsgSize %d is below the batch limits", MinMaxSendMsgSize)
	}
}
