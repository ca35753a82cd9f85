package grpcapi

import (
	"context"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// writer is a client's WriteVariables stream in a test.
type writer struct {
	t      *testing.T
	stream pb.UnifiedBridge_WriteVariablesClient
	cancel context.CancelFunc
}

func (h *harness) writer() *writer {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	h.t.Cleanup(cancel)
	stream, err := h.client.WriteVariables(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return &writer{t: h.t, stream: stream, cancel: cancel}
}

func (w *writer) send(req *pb.WriteVariablesRequest) {
	w.t.Helper()
	if err := w.stream.Send(req); err != nil {
		w.t.Fatalf("send: %v", err)
	}
}

func (w *writer) recv() *pb.WriteVariablesResponse {
	w.t.Helper()
	resp, err := w.stream.Recv()
	if err != nil {
		w.t.Fatalf("recv: %v", err)
	}
	return resp
}

// end closes the client's side and returns the stream's status.
func (w *writer) end() error {
	w.t.Helper()
	_ = w.stream.CloseSend()
	for {
		resp, err := w.stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		w.t.Fatalf("unexpected response before the end: %v", resp)
	}
}

func upd(ident string, v *pb.Value) *pb.SetVariableRequest {
	return &pb.SetVariableRequest{VariableIdentifier: ident, Value: v}
}

func upsert(ident string, typ pb.VariableType, v *pb.Value) *pb.SetVariableRequest {
	return &pb.SetVariableRequest{VariableIdentifier: ident, Value: v, CreateType: typ}
}

const floatT = pb.VariableType_VARIABLE_TYPE_FLOAT

// Batches are answered in order, one response per request, with a result
// per update; small acks leave the variable out; upserts create; a
// watcher sees each write at the revision it was acknowledged with.
func TestWriteStreamOrderAndAcks(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "x", floatT, floatV(0), nil)
	wt := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Pattern: "*"})
	w := h.writer()
	w.send(&pb.WriteVariablesRequest{SessionId: "s", Updates: []*pb.SetVariableRequest{upd("x", floatV(1)), upd("x", floatV(2))}})
	w.send(&pb.WriteVariablesRequest{Atomic: true, SmallAcks: true, Updates: []*pb.SetVariableRequest{
		upd("x", floatV(3)), upsert("fresh", floatT, floatV(9))}})
	w.send(&pb.WriteVariablesRequest{}) // barrier
	r1, r2, r3 := w.recv(), w.recv(), w.recv()
	if r1.GetSequence() != 1 || r2.GetSequence() != 2 || r3.GetSequence() != 3 {
		t.Fatalf("sequences %d %d %d", r1.GetSequence(), r2.GetSequence(), r3.GetSequence())
	}
	a, b := r1.GetResults()[0], r1.GetResults()[1]
	if !a.GetSuccess() || !b.GetSuccess() || b.GetRevision() != a.GetRevision()+1 || b.GetVariable().GetValue().GetFloatValue() != 2 ||
		b.GetVersion() != 3 || b.GetVariableId() != b.GetVariable().GetId() {
		t.Fatalf("first batch: %v", r1)
	}
	if len(r2.GetResults()) != 0 || len(r2.GetRevisions()) != 2 || r2.GetRevisions()[0] != r2.GetRevisions()[1] ||
		r2.GetVersions()[0] != 4 || r2.GetVersions()[1] != 1 || r2.GetVariableIds()[0] != a.GetVariableId() ||
		r2.GetVariableIds()[1] == "" || r2.GetRevision() != r2.GetRevisions()[0] {
		t.Fatalf("atomic small-ack batch: %v", r2)
	}
	c := &pb.SetVariableResult{Revision: r2.GetRevisions()[0]}
	d := &pb.SetVariableResult{Revision: r2.GetRevisions()[1]}
	if len(r3.GetResults()) != 0 || r3.GetRevision() != r2.GetRevision() {
		t.Fatalf("barrier: %v", r3)
	}
	for _, want := range []struct {
		typ string
		rev int64
	}{{"value_change", a.GetRevision()}, {"value_change", b.GetRevision()}, {"value_change", c.GetRevision()},
		{"variable_registered", d.GetRevision()}, {"value_change", d.GetRevision()}} {
		if u := wt.nextData(); u.GetUpdateType() != want.typ || u.GetRevision() != want.rev {
			t.Fatalf("watcher saw %s at %d, want %s at %d", u.GetUpdateType(), u.GetRevision(), want.typ, want.rev)
		}
	}
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the write stream to end", func() bool { return h.srv.ActiveWriteStreams() == 0 })
}

// Upserts through the unary calls, with small acks on SetVariables.
func TestUnaryUpsert(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	resp, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "new",
		Value: floatV(1), CreateType: floatT})
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.GetVariable(); v.GetVersion() != 1 || v.GetCreateRevision() != resp.GetRevision() || v.GetType() != floatT {
		t.Fatalf("upserted %v", resp)
	}
	many, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", SmallAcks: true, Updates: []*pb.SetVariableRequest{
		upsert("new", floatT, floatV(2)), upsert("other", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(1))}})
	if err != nil {
		t.Fatal(err)
	}
	if r := many.GetResults(); !r[0].GetSuccess() || r[0].GetVersion() != 2 || r[0].GetVariable() != nil || !r[1].GetSuccess() {
		t.Fatalf("results %v", r)
	}
}

// TestWriteStreamBadInput sends, per case, requests with one mistake on a
// fresh stream: the mistake either ends the stream with a status, or gets
// a per-item error and the stream goes on (a barrier after it is
// answered). Either way nothing changes.
func TestWriteStreamBadInput(t *testing.T) {
	h := newHarness(t, harnessOptions{
		engine: engine.Config{MaxValueBytes: 64, MaxVariablesPerSession: 4},
		config: func(c *Config) { c.MaxRequestIdentifiers = 3 },
	})
	h.createSession("s")
	h.createSession("other")
	f0, f100 := 0.0, 100.0
	h.register("s", "temp", floatT, floatV(20), &pb.Constraints{Min: &f0, Max: &f100})
	h.register("s", "word", pb.VariableType_VARIABLE_TYPE_STRING, strV("abc"), nil)
	h.register("s", "filler", floatT, floatV(0), nil)
	stale := int64(7)
	big := string(make([]byte, 100))
	for _, tc := range []struct {
		name string
		reqs []*pb.WriteVariablesRequest
		// end: the stream's status; zero (OK) means it goes on, and
		// item/reason are the per-item error of the last request's first
		// update (every update of it, when all).
		end    codes.Code
		item   codes.Code
		reason string
		all    bool
	}{
		{name: "no session on the first request", reqs: []*pb.WriteVariablesRequest{{Updates: []*pb.SetVariableRequest{upd("temp", floatV(1))}}},
			end: codes.InvalidArgument},
		{name: "unknown session", reqs: []*pb.WriteVariablesRequest{{SessionId: "nope", Updates: []*pb.SetVariableRequest{upd("temp", floatV(1))}}},
			end: codes.NotFound},
		{name: "malformed session id", reqs: []*pb.WriteVariablesRequest{{SessionId: "a b", Updates: []*pb.SetVariableRequest{upd("temp", floatV(1))}}},
			end: codes.InvalidArgument},
		{name: "another session later", reqs: []*pb.WriteVariablesRequest{{SessionId: "s"},
			{SessionId: "other", Updates: []*pb.SetVariableRequest{upsert("x", floatT, floatV(1))}}}, end: codes.InvalidArgument},
		{name: "too many updates", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{
			upd("temp", floatV(1)), upd("temp", floatV(2)), upd("temp", floatV(3)), upd("temp", floatV(4))}}}, end: codes.ResourceExhausted},
		{name: "missing value", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{{VariableIdentifier: "temp"}}}},
			item: codes.InvalidArgument},
		{name: "empty identifier", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{upd("", floatV(1))}}},
			item: codes.InvalidArgument},
		{name: "unknown variable", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{upd("ghost", floatV(1))}}},
			item: codes.NotFound},
		{name: "wrong type", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{upd("temp", strV("hot"))}}},
			item: codes.InvalidArgument},
		{name: "constraint violated", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{upd("temp", floatV(101))}}},
			item: codes.InvalidArgument},
		{name: "stale expected_version", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{
			{VariableIdentifier: "temp", Value: floatV(1), ExpectedVersion: &stale}}}}, item: codes.Aborted},
		{name: "value over the size limit", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{upd("word", strV(big))}}},
			item: codes.ResourceExhausted, reason: ReasonLimitExceeded},
		{name: "upsert of a choice", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{
			upsert("pick", pb.VariableType_VARIABLE_TYPE_CHOICE, choiceV("a"))}}}, item: codes.InvalidArgument},
		{name: "upsert of an unknown type", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{
			upsert("n", pb.VariableType(99), floatV(1))}}}, item: codes.InvalidArgument},
		{name: "upsert of another type than the variable's", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{
			upsert("word", floatT, floatV(1))}}}, item: codes.InvalidArgument},
		{name: "upsert past the variable limit", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Updates: []*pb.SetVariableRequest{
			upsert("n1", floatT, floatV(1)), upsert("n2", floatT, floatV(1))}, Atomic: true}},
			item: codes.ResourceExhausted, reason: ReasonLimitExceeded, all: true},
		{name: "atomic batch with one malformed update", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
			upd("temp", floatV(5)), {VariableIdentifier: "temp"}}}}, item: codes.InvalidArgument, all: true},
		{name: "atomic batch with one refused update", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
			upd("temp", floatV(5)), upd("temp", floatV(500))}}}, item: codes.InvalidArgument, all: true},
		{name: "small acks list the failure with its index", reqs: []*pb.WriteVariablesRequest{{SessionId: "s", SmallAcks: true, Updates: []*pb.SetVariableRequest{
			upd("ghost", floatV(1))}}}, item: codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshot()
			w := h.writer()
			for _, r := range tc.reqs {
				w.send(r)
			}
			var last *pb.WriteVariablesResponse
			for range tc.reqs {
				resp, err := w.stream.Recv()
				if err != nil {
					if tc.end == codes.OK {
						t.Fatalf("stream ended: %v", err)
					}
					wantCode(t, err, tc.end)
					break
				}
				last = resp
			}
			if tc.end != codes.OK {
				if last != nil && len(tc.reqs) == 1 {
					t.Fatalf("answered %v, want the stream to end with %v", last, tc.end)
				}
				if last != nil { // the requests before the bad one
					if _, err := w.stream.Recv(); err == nil {
						t.Fatal("the stream went on")
					} else {
						wantCode(t, err, tc.end)
					}
				}
			} else {
				if last == nil {
					t.Fatal("no response")
				}
				n := 1
				if tc.all {
					n = len(last.GetResults())
				}
				for _, r := range last.GetResults()[:n] {
					if r.GetSuccess() || codes.Code(r.GetErrorCode()) != tc.item || r.GetError() == "" {
						t.Fatalf("result %v, want error %v", r, tc.item)
					}
					if tc.reason != "" && r.GetErrorReason() != tc.reason {
						t.Fatalf("result %v, want reason %s", r, tc.reason)
					}
				}
				w.send(&pb.WriteVariablesRequest{}) // the stream goes on
				if resp := w.recv(); resp.GetSequence() != uint64(len(tc.reqs)+1) {
					t.Fatalf("barrier answered as %v", resp)
				}
				if err := w.end(); err != nil {
					t.Fatal(err)
				}
			}
			if after := h.snapshot(); !sameState(before, after) {
				t.Fatalf("state changed:\n%v\n%v", before, after)
			}
		})
	}
	waitFor(t, "every write stream to end", func() bool { return h.srv.ActiveWriteStreams() == 0 })
}

// blockingBackend holds every SetBatches call until release is closed.
type blockingBackend struct {
	*recordingBackend
	release chan struct{}
	calls   atomic.Int64
}

func (b *blockingBackend) SetBatches(ctx context.Context, batches []engine.SetManyRequest) []engine.BatchResult {
	b.calls.Add(1)
	<-b.release
	return b.Engine.SetBatches(ctx, batches)
}

// countingRecv counts the requests the server has read off its streams.
func countingRecv(n *atomic.Int64) grpc.ServerOption {
	return grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &countedStream{ServerStream: ss, n: n})
	})
}

type countedStream struct {
	grpc.ServerStream
	n *atomic.Int64
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.n.Add(1)
	}
	return err
}

// A server whose engine is slower than its client reads no more than its
// window of requests ahead of what it answered.
func TestWriteStreamWindowHoldsTheClientBack(t *testing.T) {
	eng := engine.New(engine.Config{})
	t.Cleanup(func() { _ = eng.Close() })
	backend := &blockingBackend{recordingBackend: &recordingBackend{Engine: eng}, release: make(chan struct{})}
	srv := New(Config{Backend: backend, WriteWindow: 3})
	var received atomic.Int64
	_, cc := serveLoopback(t, srv, countingRecv(&received))
	client := pb.NewUnifiedBridgeClient(cc)
	if _, err := client.InitializeSession(context.Background(), &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	stream, err := client.WriteVariables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const sent = 40
	go func() {
		for i := range sent {
			req := &pb.WriteVariablesRequest{SessionId: "s", Updates: []*pb.SetVariableRequest{upsert("x", floatT, floatV(float64(i)))}}
			if stream.Send(req) != nil {
				return
			}
		}
		_ = stream.CloseSend()
	}()
	waitFor(t, "the window to fill", func() bool { return received.Load() == 3 && backend.calls.Load() == 1 })
	time.Sleep(50 * time.Millisecond) // a server that read on would have by now
	if n := received.Load(); n != 3 {
		t.Fatalf("the server read %d requests with 3 in its window, none answered", n)
	}
	close(backend.release)
	for i := range sent {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if r := resp.GetResults()[0]; resp.GetSequence() != uint64(i+1) || !r.GetSuccess() || r.GetVersion() != int64(i+1) {
			t.Fatalf("response %d: %v", i, resp)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

// An idle write stream ends when the server shuts down, so that a
// graceful stop does not wait for it.
func TestWriteStreamEndsOnShutdown(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	w := h.writer()
	w.send(&pb.WriteVariablesRequest{SessionId: "s"})
	w.recv()
	h.srv.Shutdown()
	_, err := w.stream.Recv()
	wantCode(t, err, codes.Unavailable)
}

// Write streams that end every way (cleanly, cancelled mid-flight, ended
// by the server for a missing session) leave no goroutine behind.
func TestWriteStreamsLeaveNoGoroutines(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	if _, err := h.client.Ping(h.ctx(), &pb.PingRequest{}); err != nil { // connect first
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()
	for i := range 6 {
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := h.client.WriteVariables(ctx)
		if err != nil {
			t.Fatal(err)
		}
		session := "s"
		if i%3 == 2 {
			session = "gone"
		}
		for j := range 20 {
			req := &pb.WriteVariablesRequest{Updates: []*pb.SetVariableRequest{upsert("x", floatT, floatV(float64(j)))}}
			if j == 0 {
				req.SessionId = session
			}
			if stream.Send(req) != nil {
				break
			}
		}
		switch i % 3 {
		case 0: // clean: close and read every answer
			_ = stream.CloseSend()
			for {
				if _, err := stream.Recv(); err != nil {
					break
				}
			}
		case 1: // cut mid-flight
		case 2: // NOT_FOUND
			_, err := stream.Recv()
			wantCode(t, err, codes.NotFound)
		}
		cancel()
	}
	waitFor(t, "write stream handlers to return", func() bool { return h.srv.ActiveWriteStreams() == 0 })
	waitFor(t, "goroutines to return to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}
