package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// faultBackend is the engine, except that GetSession fails with err: it
// drives over gRPC the engine errors a test cannot provoke on demand
// (a disk failing, a write racing another).
type faultBackend struct {
	*engine.Engine
	err error
}

func (b *faultBackend) GetSession(context.Context, string) (engine.SessionInfo, error) {
	return engine.SessionInfo{}, b.err
}

// wantReason checks that err is a status of reason's code with an
// ErrorInfo of that reason, carrying meta (nil values: the key only).
func wantReason(t *testing.T, err error, reason string, meta map[string]string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != codeOf(reason) {
		t.Fatalf("status %v, want %v (%s)", err, codeOf(reason), reason)
	}
	info := infoOf(st)
	if info.GetReason() != reason || info.GetDomain() != ErrorDomain {
		t.Fatalf("ErrorInfo %v, want reason %s in domain %s", info, reason, ErrorDomain)
	}
	for k, v := range meta {
		got, ok := info.GetMetadata()[k]
		if !ok || (v != "" && got != v) {
			t.Fatalf("%s metadata %v: want %s=%q", reason, info.GetMetadata(), k, v)
		}
	}
}

// TestErrorTableOverGRPC provokes every reason of the error table through
// a real gRPC server and checks its code, its ErrorInfo and the metadata
// the table names. Each case says which reason it provokes; a reason of
// the table that no case provokes fails the test. (Every status any test
// of this package provokes is checked for an ErrorInfo besides: see
// reasonCheck.)
func TestErrorTableOverGRPC(t *testing.T) {
	h := newHarness(t, harnessOptions{config: func(c *Config) { c.MaxRequestIdentifiers = 2 }})
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), &pb.Constraints{Max: proto.Float64(10)})
	info, err := h.client.GetSession(h.ctx(), &pb.GetSessionRequest{SessionId: "s"})
	if err != nil {
		t.Fatal(err)
	}
	inc := info.GetSession().GetIncarnation()
	type tc struct {
		name   string
		reason string
		meta   map[string]string
		call   func(t *testing.T) error
	}
	cases := []tc{
		{"empty session id", ReasonInvalidArgument, nil, func(*testing.T) error {
			_, err := h.client.GetSession(h.ctx(), &pb.GetSessionRequest{})
			return err
		}},
		{"malformed name", ReasonInvalidArgument, nil, func(*testing.T) error {
			_, err := h.client.RegisterVariable(h.ctx(), &pb.RegisterVariableRequest{SessionId: "s", Name: "9x",
				Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: floatV(0)})
			return err
		}},
		{"wrong type", ReasonWrongType, map[string]string{"variable_type": "float", "value_type": "string"}, func(*testing.T) error {
			_, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: strV("hot")})
			return err
		}},
		{"constraint", ReasonConstraintViolated, map[string]string{"constraint": "max"}, func(*testing.T) error {
			_, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: floatV(11)})
			return err
		}},
		{"unknown session", ReasonSessionNotFound, nil, func(*testing.T) error {
			_, err := h.client.GetSession(h.ctx(), &pb.GetSessionRequest{SessionId: "nope"})
			return err
		}},
		{"unknown variable", ReasonVariableNotFound, nil, func(*testing.T) error {
			_, err := h.client.GetVariable(h.ctx(), &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "nope"})
			return err
		}},
		{"registered twice", ReasonAlreadyExists, nil, func(*testing.T) error {
			_, err := h.client.RegisterVariable(h.ctx(), &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
				Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: floatV(0)})
			return err
		}},
		{"expected version", ReasonVersionConflict, map[string]string{"variable": "x", "expected_version": "7", "current_version": "1"}, func(*testing.T) error {
			_, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x",
				Value: floatV(1), ExpectedVersion: proto.Int64(7)})
			return err
		}},
		{"request identifiers", ReasonLimitExceeded, map[string]string{"limit": LimitRequestIdentifiers, "value": "2"}, func(*testing.T) error {
			_, err := h.client.GetVariables(h.ctx(), &pb.GetVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x", "x", "x"}})
			return err
		}},
		{"incarnation", ReasonIncarnationChanged, map[string]string{"session_id": "s", "current_incarnation": inc, "requested_incarnation": "0000000000000000"}, func(*testing.T) error {
			return h.watchErr(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(0), Incarnation: "0000000000000000"})
		}},
		{"filters not loaded", ReasonFiltersNotLoaded, nil, func(*testing.T) error {
			return h.watchErr(&pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{filter("deadband", "threshold", "1")}})
		}},
		{"slow consumer", ReasonSlowConsumer, map[string]string{"resume_revision": ""}, func(t *testing.T) error {
			h := newHarness(t, harnessOptions{engine: engine.Config{SubscriptionBytes: 1 << 20}})
			h.createSession("s")
			h.register("s", "x", pb.VariableType_VARIABLE_TYPE_STRING, strV(""), nil)
			h.register("s", "y", pb.VariableType_VARIABLE_TYPE_STRING, strV(""), nil)
			w := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
			big := strings.Repeat("v", 600<<10) // two of them pass 1 MiB in one publish
			_, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true,
				Updates: []*pb.SetVariableRequest{{VariableIdentifier: "x", Value: strV(big)}, {VariableIdentifier: "y", Value: strV(big)}}})
			if err != nil {
				t.Fatal(err)
			}
			return w.end()
		}},
		{"shutdown", ReasonShuttingDown, map[string]string{"resume_revision": "2"}, func(t *testing.T) error {
			h := newHarness(t, harnessOptions{})
			h.createSession("s")
			h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
			w := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
			h.set("s", "x", floatV(1))
			wantUpdate(t, w.nextData(), "value_change", "x", 2)
			h.srv.Shutdown()
			return w.end()
		}},
		{"watch cancelled", ReasonWatchCancelled, nil, func(t *testing.T) error {
			m := h.openMux()
			w := m.create(1, &pb.WatchVariablesRequest{SessionId: "s"}, 0)
			w.created()
			w.cancel()
			e := w.ended()
			return endedErr(e)
		}},
	}
	// The engine errors no request provokes on demand, each from the
	// backend over gRPC.
	for _, f := range []struct {
		reason string
		meta   map[string]string
		err    error
	}{
		{ReasonConcurrentUpdate, nil, fmt.Errorf("%w: the variables changed while this call was checked", engine.ErrVersionConflict)},
		{ReasonCompacted, map[string]string{"compacted_revision": "5", "requested_revision": "2"}, &engine.CompactedError{Requested: 2, Compacted: 5}},
		{ReasonPermissionDenied, nil, fmt.Errorf("%w: session %q belongs to another tenant", engine.ErrPermissionDenied, "s")},
		{ReasonStorageUnavailable, nil, fmt.Errorf("%w: disk full", engine.ErrUnavailable)},
		{ReasonShuttingDown, nil, engine.ErrClosed},
		{ReasonCancelled, nil, context.Canceled},
		{ReasonDeadlineExceeded, nil, context.DeadlineExceeded},
		{ReasonInternal, nil, errors.New("a bug")},
	} {
		cases = append(cases, tc{"backend " + f.reason, f.reason, f.meta, func(t *testing.T) error {
			eng := engine.New(engine.Config{})
			t.Cleanup(func() { _ = eng.Close() })
			_, cc := serveLoopback(t, New(Config{Backend: &faultBackend{Engine: eng, err: f.err}}))
			_, err := pb.NewUnifiedBridgeClient(cc).GetSession(h.ctx(), &pb.GetSessionRequest{SessionId: "s"})
			return err
		}})
	}
	// A node of a cluster whose log is unreachable: a linearizable read.
	cases = append(cases, tc{"clustered read, log unreachable", ReasonClusterUnavailable, nil, func(t *testing.T) error {
		eng := engine.New(engine.Config{})
		t.Cleanup(func() { _ = eng.Close() })
		_, cc := serveLoopback(t, New(Config{Backend: Clustered(eng, unreachableLog{})}))
		_, err := pb.NewUnifiedBridgeClient(cc).GetSession(h.ctx(), &pb.GetSessionRequest{SessionId: "s"})
		return err
	}})
	// The filter reasons need a server with plugins.
	filtered, _ := newFilterHarness(t, harnessOptions{}, nil, testPlugin("deadband"))
	filtered.createSession("s")
	cases = append(cases, tc{"start_revision with filters", ReasonUnimplemented, nil, func(*testing.T) error {
		return filtered.watchErr(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(0),
			Filters: []*pb.FilterSpec{filter("deadband", "threshold", "1")}})
	}})
	// TOKEN_* and FILTER_FAILED are driven in TestErrorTableAuth and
	// TestFilterOnErrorCloseEndsMembers.
	covered := map[string]bool{ReasonTokenMissing: true, ReasonTokenMalformed: true, ReasonTokenInvalid: true, ReasonFilterFailed: true}
	for _, c := range cases {
		covered[c.reason] = true
		t.Run(c.name, func(t *testing.T) { wantReason(t, c.call(t), c.reason, c.meta) })
	}
	for _, r := range reasonTable {
		if !covered[r.reason] {
			t.Errorf("no case provokes %s", r.reason)
		}
	}
}

// endedErr is the status a WatchEnded stands for.
func endedErr(e *pb.WatchEnded) error {
	st := status.New(codes.Code(e.GetCode()), e.GetMessage())
	if e.GetReason() != "" {
		st, _ = st.WithDetails(&errdetails.ErrorInfo{Reason: e.GetReason(), Domain: ErrorDomain, Metadata: e.GetMetadata()})
	}
	return st.Err()
}

// TestErrorTableAuth: each refusal of a token-protected server (in the
// tap, before any handler) carries its reason.
func TestErrorTableAuth(t *testing.T) {
	s := newAuthServer(t, testTokens(t, adminToken+"\n"))
	for _, tc := range []struct{ auth, reason string }{
		{"", ReasonTokenMissing},
		{"Basic abc", ReasonTokenMalformed},
		{bearer("wrong-token-0123456789"), ReasonTokenInvalid},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			_, err := s.client.GetSession(as(t, tc.auth), &pb.GetSessionRequest{SessionId: "s"})
			wantReason(t, err, tc.reason, nil)
			stream, err := s.client.WatchVariables(as(t, tc.auth), &pb.WatchVariablesRequest{SessionId: "s"})
			wantReason(t, recvFirst(stream, err), tc.reason, nil)
		})
	}
}

// TestSetVariablesItemReasons: a per-item failure of a non-atomic
// SetVariables carries its reason and metadata as fields.
func TestSetVariablesItemReasons(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	resp, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Updates: []*pb.SetVariableRequest{
		{VariableIdentifier: "x", Value: strV("hot")},
		{VariableIdentifier: "nope", Value: floatV(1)},
		{VariableIdentifier: "x", Value: floatV(2), ExpectedVersion: proto.Int64(9)},
		{VariableIdentifier: "x", Value: floatV(3)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		reason string
		meta   map[string]string
	}{
		{ReasonWrongType, map[string]string{"variable_type": "float", "value_type": "string"}},
		{ReasonVariableNotFound, nil},
		{ReasonVersionConflict, map[string]string{"current_version": "1", "expected_version": "9"}},
		{"", nil},
	}
	for i, r := range resp.GetResults() {
		w := want[i]
		if r.GetErrorReason() != w.reason || (w.reason != "" && codes.Code(r.GetErrorCode()) != codeOf(w.reason)) {
			t.Fatalf("result %d: %v, want reason %q", i, r, w.reason)
		}
		for k, v := range w.meta {
			if r.GetErrorMetadata()[k] != v {
				t.Fatalf("result %d: metadata %v, want %s=%s", i, r.GetErrorMetadata(), k, v)
			}
		}
	}
}

// TestErrorTableInREADME: the README's error table lists every reason of
// reasonTable with its code and metadata keys, and no other reason.
func TestErrorTableInREADME(t *testing.T) {
	for _, path := range []string{"../README.md", "../clients/python/README.md"} {
		t.Run(path, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Rows: | `REASON` | CODE | `key`, `key` | ... |
			row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| ([A-Z_]+) \\| ([^|]*)\\|")
			listed := map[string]bool{}
			for _, m := range row.FindAllStringSubmatch(string(data), -1) {
				reason, code, meta := m[1], m[2], m[3]
				c, ok := reasonCode[reason]
				if !ok {
					t.Errorf("README lists %s, which is not in reasonTable", reason)
					continue
				}
				listed[reason] = true
				if code != CodeName(c) {
					t.Errorf("README: %s is %s, want %s", reason, code, CodeName(c))
				}
				keys := regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(meta, -1)
				var got []string
				for _, k := range keys {
					got = append(got, k[1])
				}
				for _, r := range reasonTable {
					if r.reason == reason && !slices.Equal(got, r.meta) {
						t.Errorf("README: %s metadata %v, want %v", reason, got, r.meta)
					}
				}
			}
			for _, r := range reasonTable {
				if !listed[r.reason] {
					t.Errorf("README does not list %s (%s)", r.reason, CodeName(r.code))
				}
			}
		})
	}
}

// unreachableLog is the log of a cluster node that cannot reach it.
type unreachableLog struct{}

func (unreachableLog) Sync(context.Context) error                { return errors.New("nats: no servers available") }
func (unreachableLog) WaitApplied(context.Context, uint64) error { return nil }
