package grpcapi

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// fuzzRPCs are the RPCs FuzzRequests calls; the fuzzer's kind argument
// picks one (mod len). Each decodes msg into its request type.
var fuzzRPCs = []struct {
	name string
	req  func() proto.Message
}{
	{"SetVariable", func() proto.Message { return &pb.SetVariableRequest{} }},
	{"RegisterVariable", func() proto.Message { return &pb.RegisterVariableRequest{} }},
	{"SetVariables", func() proto.Message { return &pb.SetVariablesRequest{} }},
	{"WatchVariables", func() proto.Message { return &pb.WatchVariablesRequest{} }},
	{"WatchVariablesBatched", func() proto.Message { return &pb.WatchVariablesRequest{} }},
	{"ListVariables", func() proto.Message { return &pb.ListVariablesRequest{} }},
	{"GetVariable", func() proto.Message { return &pb.GetVariableRequest{} }},
	{"GetVariables", func() proto.Message { return &pb.GetVariablesRequest{} }},
	{"DeleteVariable", func() proto.Message { return &pb.DeleteVariableRequest{} }},
	{"InitializeSession", func() proto.Message { return &pb.InitializeSessionRequest{} }},
	{"CleanupSession", func() proto.Message { return &pb.CleanupSessionRequest{} }},
	{"Heartbeat", func() proto.Message { return &pb.HeartbeatRequest{} }},
}

// FuzzRequests decodes arbitrary bytes into a request (kind picks the RPC,
// see fuzzRPCs; undecodable bytes are skipped, as gRPC would refuse them)
// and calls the Server directly over a fresh in-process engine holding
// session "s" with one constrained variable of each type (see
// fuzzPopulate) and an empty session "t". It checks that
//
//   - nothing panics;
//   - an error is a gRPC status whose code is a client's (never OK,
//     UNKNOWN, INTERNAL or UNAVAILABLE), with a message;
//   - a refused call leaves every session and variable as it was (a
//     failed SetVariables item too, and a watch changes nothing);
//   - a response marshals (one that does not is an INTERNAL on the wire);
//   - a successful write reads back: the value set or registered is the
//     variable's value afterwards.
//
// Run it with: go test -run '^$' -fuzz '^FuzzRequests$' -fuzztime 60s ./grpcapi/
func FuzzRequests(f *testing.F) {
	for _, seed := range fuzzRequestSeeds() {
		b, err := proto.Marshal(seed.msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed.kind, b)
	}
	f.Fuzz(func(t *testing.T, kind uint8, msg []byte) {
		rpc := fuzzRPCs[int(kind)%len(fuzzRPCs)]
		req := rpc.req()
		if proto.Unmarshal(msg, req) != nil {
			return
		}
		e := engine.New(engine.Config{})
		defer e.Close()
		s := New(Config{Backend: e})
		defer s.Shutdown()
		fuzzPopulate(t, s)
		before := fuzzSnapshot(t, s)

		ctx := context.Background()
		var resp proto.Message
		var err error
		switch req := req.(type) {
		case *pb.SetVariableRequest:
			resp, err = s.SetVariable(ctx, req)
		case *pb.RegisterVariableRequest:
			resp, err = s.RegisterVariable(ctx, req)
		case *pb.SetVariablesRequest:
			resp, err = s.SetVariables(ctx, req)
		case *pb.WatchVariablesRequest:
			if rpc.name == "WatchVariables" {
				err = s.WatchVariables(req, &fuzzStream[pb.VariableUpdate]{})
			} else {
				err = s.WatchVariablesBatched(req, &fuzzStream[pb.VariableUpdateBatch]{})
			}
			if errors.Is(err, errFuzzWatchStarted) {
				err = nil
			}
		case *pb.ListVariablesRequest:
			resp, err = s.ListVariables(ctx, req)
		case *pb.GetVariableRequest:
			resp, err = s.GetVariable(ctx, req)
		case *pb.GetVariablesRequest:
			resp, err = s.GetVariables(ctx, req)
		case *pb.DeleteVariableRequest:
			resp, err = s.DeleteVariable(ctx, req)
		case *pb.InitializeSessionRequest:
			resp, err = s.InitializeSession(ctx, req)
		case *pb.CleanupSessionRequest:
			resp, err = s.CleanupSession(ctx, req)
		case *pb.HeartbeatRequest:
			resp, err = s.Heartbeat(ctx, req)
		}

		if err != nil {
			fuzzCheckStatus(t, rpc.name, err)
			if after := fuzzSnapshot(t, s); !sameState(before, after) {
				t.Fatalf("%s refused with %v but changed the state:\nbefore %v\nafter  %v", rpc.name, err, before, after)
			}
			return
		}
		if resp != nil {
			if _, merr := proto.Marshal(resp); merr != nil {
				t.Fatalf("%s response does not marshal: %v", rpc.name, merr)
			}
		}
		switch req := req.(type) {
		case *pb.SetVariableRequest:
			fuzzReadBack(t, s, req.GetSessionId(), resp.(*pb.SetVariableResponse).GetVariable().GetId(), req.GetValue())
		case *pb.RegisterVariableRequest:
			fuzzReadBack(t, s, req.GetSessionId(), resp.(*pb.RegisterVariableResponse).GetVariable().GetId(), req.GetInitialValue())
		case *pb.SetVariablesRequest:
			fuzzCheckSetMany(t, s, req, resp.(*pb.SetVariablesResponse), before)
		case *pb.WatchVariablesRequest, *pb.ListVariablesRequest, *pb.GetVariableRequest, *pb.GetVariablesRequest:
			if after := fuzzSnapshot(t, s); !sameState(before, after) {
				t.Fatalf("%s changed the state:\nbefore %v\nafter  %v", rpc.name, before, after)
			}
		}
	})
}

type fuzzSeed struct {
	kind uint8
	msg  proto.Message
}

// fuzzRequestSeeds are requests around the populated state: good ones,
// and one of each kind of client mistake.
func fuzzRequestSeeds() []fuzzSeed {
	f5, i3 := 5.0, int64(3)
	return []fuzzSeed{
		{0, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "temp", Value: floatV(50), Source: "fuzz"}},
		{0, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "temp", Value: floatV(101)}},
		{0, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "1", Value: floatV(1), ExpectedVersion: &i3}},
		{1, &pb.RegisterVariableRequest{SessionId: "s", Name: "new", Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: floatV(1), Constraints: &pb.Constraints{Min: &f5}}},
		{2, &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
			{VariableIdentifier: "temp", Value: floatV(1)}, {VariableIdentifier: "count", Value: intV(11)}}}},
		{2, &pb.SetVariablesRequest{SessionId: "s", Updates: []*pb.SetVariableRequest{
			{VariableIdentifier: "word", Value: strV("abcd")}, {VariableIdentifier: "word", Value: strV("toolong")}, {VariableIdentifier: "nope", Value: boolV(true)}}}},
		{3, &pb.WatchVariablesRequest{SessionId: "s", Pattern: "[a-", IncludeInitialValues: true}},
		{4, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"temp"}, MaxBatchSize: 10, MaxBatchDelay: durationpb.New(-1)}},
		{5, &pb.ListVariablesRequest{SessionId: "s", Pattern: "t*"}},
		{7, &pb.GetVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"temp", "2", "missing"}}},
		{8, &pb.DeleteVariableRequest{SessionId: "s", VariableIdentifier: "ten"}},
		{9, &pb.InitializeSessionRequest{SessionId: "u", Ttl: durationpb.New(-5)}},
	}
}

// fuzzPopulate registers, through s, session "s" with one constrained
// variable of each type and an empty session "t".
func fuzzPopulate(t *testing.T, s *Server) {
	t.Helper()
	ctx := context.Background()
	for _, id := range []string{"s", "t"} {
		if _, err := s.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: id}); err != nil {
			t.Fatal(err)
		}
	}
	f0, f100 := 0.0, 100.0
	i0, i10 := int64(0), int64(10)
	l2, l5 := int64(2), int64(5)
	for _, r := range []*pb.RegisterVariableRequest{
		{Name: "temp", Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: floatV(20), Constraints: &pb.Constraints{Min: &f0, Max: &f100}},
		{Name: "count", Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: intV(5), Constraints: &pb.Constraints{MinInteger: &i0, MaxInteger: &i10}},
		{Name: "word", Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: strV("abc"), Constraints: &pb.Constraints{MinLength: &l2, MaxLength: &l5, Pattern: "[a-z]+"}},
		{Name: "flag", Type: pb.VariableType_VARIABLE_TYPE_BOOLEAN, InitialValue: boolV(false)},
		{Name: "mode", Type: pb.VariableType_VARIABLE_TYPE_CHOICE, InitialValue: choiceV("a"), Constraints: &pb.Constraints{Choices: []string{"a", "b"}}},
		{Name: "mod", Type: pb.VariableType_VARIABLE_TYPE_MODULE, InitialValue: moduleV("x"), Constraints: &pb.Constraints{AllowedModules: []string{"x", "y"}}},
		{Name: "emb", Type: pb.VariableType_VARIABLE_TYPE_EMBEDDING, InitialValue: embV(1, 2, 3), Constraints: &pb.Constraints{Dimensions: 3}},
		{Name: "ten", Type: pb.VariableType_VARIABLE_TYPE_TENSOR, InitialValue: tensorV("uint8", make([]byte, 4), 2, 2), Constraints: &pb.Constraints{Shape: []int64{2, -1}}},
	} {
		r.SessionId = "s"
		if _, err := s.RegisterVariable(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
}

// fuzzSnapshot is every session and its variables, less the timestamps
// every use of a session refreshes (like harness.snapshot, without gRPC).
func fuzzSnapshot(t *testing.T, s *Server) []proto.Message {
	t.Helper()
	ctx := context.Background()
	list, err := s.ListSessions(ctx, &pb.ListSessionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []proto.Message
	for _, sess := range list.GetSessions() {
		vars, err := s.ListVariables(ctx, &pb.ListVariablesRequest{SessionId: sess.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		sess.LastUsedAt, sess.ExpiresAt = nil, nil
		out = append(out, sess, vars)
	}
	return out
}

// fuzzCheckStatus fails unless err is a status a client mistake may get.
func fuzzCheckStatus(t *testing.T, rpc string, err error) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: error %v (%T) is not a gRPC status", rpc, err, err)
	}
	switch st.Code() {
	case codes.OK, codes.Unknown, codes.Internal, codes.Unavailable, codes.DataLoss:
		t.Fatalf("%s: a client's request answered with %v", rpc, err)
	}
	if st.Message() == "" {
		t.Fatalf("%s: status %v has no message", rpc, st.Code())
	}
}

// fuzzReadBack checks that variable id of session holds want.
func fuzzReadBack(t *testing.T, s *Server, session, id string, want *pb.Value) {
	t.Helper()
	resp, err := s.GetVariable(context.Background(), &pb.GetVariableRequest{SessionId: session, VariableIdentifier: id})
	if err != nil {
		t.Fatalf("reading back %s/%s: %v", session, id, err)
	}
	got, err1 := valueFromProto(resp.GetVariable().GetValue(), "value")
	w, err2 := valueFromProto(want, "value")
	if err1 != nil || err2 != nil || !got.Equal(w) {
		t.Fatalf("%s/%s reads back %v, want %v (%v, %v)", session, id, got, w, err1, err2)
	}
}

// fuzzCheckSetMany checks a successful SetVariables: one result per
// update, failed ones with a client's code, every variable holding the
// value of the last update that succeeded on it, and an atomic call
// either all applied (at one revision) or refused.
func fuzzCheckSetMany(t *testing.T, s *Server, req *pb.SetVariablesRequest, resp *pb.SetVariablesResponse, before []proto.Message) {
	t.Helper()
	if len(resp.GetResults()) != len(req.GetUpdates()) {
		t.Fatalf("%d results for %d updates", len(resp.GetResults()), len(req.GetUpdates()))
	}
	last := map[string]*pb.Value{}
	succeeded := 0
	for i, r := range resp.GetResults() {
		if !r.GetSuccess() {
			if req.GetAtomic() {
				t.Fatalf("atomic SetVariables succeeded with failed result %d: %v", i, r)
			}
			switch c := codes.Code(r.GetErrorCode()); c {
			case codes.OK, codes.Unknown, codes.Internal, codes.Unavailable, codes.DataLoss:
				t.Fatalf("result %d: a client's update answered with %v: %s", i, c, r.GetError())
			}
			if r.GetError() == "" {
				t.Fatalf("result %d: failed without a message", i)
			}
			continue
		}
		succeeded++
		if req.GetAtomic() && r.GetRevision() != resp.GetRevision() {
			t.Fatalf("atomic result %d at revision %d, call at %d", i, r.GetRevision(), resp.GetRevision())
		}
		last[r.GetVariable().GetId()] = req.GetUpdates()[i].GetValue()
	}
	for id, v := range last {
		fuzzReadBack(t, s, req.GetSessionId(), id, v)
	}
	if succeeded == 0 {
		if after := fuzzSnapshot(t, s); !sameState(before, after) {
			t.Fatalf("SetVariables applied nothing but changed the state:\nbefore %v\nafter  %v", before, after)
		}
	}
}

// errFuzzWatchStarted is what fuzzStream's SendHeader answers: a watch
// that gets that far was accepted, and the handler returns at once.
var errFuzzWatchStarted = errors.New("fuzz: watch started")

// fuzzStream is a server stream that ends the watch when its handler
// sends the headers, right after the subscription is registered.
type fuzzStream[T any] struct{}

func (*fuzzStream[T]) Send(*T) error                { return errFuzzWatchStarted }
func (*fuzzStream[T]) SetHeader(metadata.MD) error  { return nil }
func (*fuzzStream[T]) SendHeader(metadata.MD) error { return errFuzzWatchStarted }
func (*fuzzStream[T]) SetTrailer(metadata.MD)       {}
func (*fuzzStream[T]) Context() context.Context     { return context.Background() }
func (*fuzzStream[T]) SendMsg(any) error            { return errFuzzWatchStarted }
func (*fuzzStream[T]) RecvMsg(any) error            { return errFuzzWatchStarted }

var _ grpc.ServerStreamingServer[pb.VariableUpdate] = (*fuzzStream[pb.VariableUpdate])(nil)
