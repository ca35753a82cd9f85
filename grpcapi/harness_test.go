package grpcapi

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// waitTimeout bounds every wait in these tests. It is a failure deadline,
// never an expected duration: helpers return as soon as the condition holds.
const waitTimeout = 10 * time.Second

// harness is the real engine behind the real gRPC server on a loopback
// listener, with a client connected to it.
type harness struct {
	t       *testing.T
	eng     *engine.Engine
	backend *recordingBackend
	srv     *Server
	gs      *grpc.Server
	cc      *grpc.ClientConn
	client  pb.UnifiedBridgeClient
}

// conn is the client connection, for other services' clients.
func (h *harness) conn() *grpc.ClientConn { return h.cc }

type harnessOptions struct {
	engine    engine.Config
	heartbeat time.Duration
	// filters, feedBuffer and memberBuffer go to Config (filter_test.go).
	filters      Filters
	memberBuffer int
	// config, if set, adjusts the server's Config (limits_test.go).
	config func(*Config)
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	eng := engine.New(opts.engine)
	backend := &recordingBackend{Engine: eng}
	cfg := Config{Backend: backend, HeartbeatInterval: opts.heartbeat, Filters: opts.filters, MemberBuffer: opts.memberBuffer}
	if opts.config != nil {
		opts.config(&cfg)
	}
	srv := New(cfg)
	t.Cleanup(func() { _ = eng.Close() }) // after serveLoopback's cleanup
	gs, conn := serveLoopback(t, srv)
	return &harness{t: t, eng: eng, backend: backend, srv: srv, gs: gs, cc: conn, client: pb.NewUnifiedBridgeClient(conn)}
}

// serveLoopback serves srv on a loopback port with a gRPC server built
// with opts, and returns that server and a plaintext connection to it;
// the test's cleanup closes them (and shuts srv down) in order.
func serveLoopback(t *testing.T, srv *Server, opts ...grpc.ServerOption) (*grpc.Server, *grpc.ClientConn) {
	t.Helper()
	check := reasonCheck(t)
	gs := grpc.NewServer(append([]grpc.ServerOption{ServerOption(),
		grpc.ChainUnaryInterceptor(check.unary), grpc.ChainStreamInterceptor(check.stream)}, opts...)...)
	Register(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Shutdown()
		gs.Stop()
		<-served
	})
	return gs, conn
}

// ctx is a context for one unary call.
func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	h.t.Cleanup(cancel)
	return ctx
}

// recordingBackend is the engine, plus a record of every subscription the
// server started, so tests can check what became of them.
type recordingBackend struct {
	*engine.Engine
	mu   sync.Mutex
	subs []*engine.Subscription
}

func (b *recordingBackend) Watch(ctx context.Context, req engine.WatchRequest) (*engine.Subscription, error) {
	sub, err := b.Engine.Watch(ctx, req)
	if err == nil {
		b.mu.Lock()
		b.subs = append(b.subs, sub)
		b.mu.Unlock()
	}
	return sub, err
}

func (b *recordingBackend) subscriptions() []*engine.Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*engine.Subscription(nil), b.subs...)
}

// fakeClock is a settable clock for the engine.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantCode fails unless err is a status with code want (codes.OK: nil).
func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("status %v (%v), want %v", got, err, want)
	}
}

// createSession creates a session with the given id.
func (h *harness) createSession(id string) {
	h.t.Helper()
	if _, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: id}); err != nil {
		h.t.Fatalf("InitializeSession(%q): %v", id, err)
	}
}

// register registers a variable and returns it.
func (h *harness) register(session, name string, typ pb.VariableType, v *pb.Value, c *pb.Constraints) *pb.Variable {
	h.t.Helper()
	resp, err := h.client.RegisterVariable(h.ctx(), &pb.RegisterVariableRequest{
		SessionId: session, Name: name, Type: typ, InitialValue: v, Constraints: c,
	})
	if err != nil {
		h.t.Fatalf("RegisterVariable(%q): %v", name, err)
	}
	return resp.GetVariable()
}

// set sets a variable and returns the response.
func (h *harness) set(session, ident string, v *pb.Value) *pb.SetVariableResponse {
	h.t.Helper()
	resp, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{
		SessionId: session, VariableIdentifier: ident, Value: v, Source: "test",
	})
	if err != nil {
		h.t.Fatalf("SetVariable(%q): %v", ident, err)
	}
	return resp
}

func floatV(f float64) *pb.Value { return &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: f}} }
func intV(i int64) *pb.Value     { return &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: i}} }
func strV(s string) *pb.Value    { return &pb.Value{Kind: &pb.Value_StringValue{StringValue: s}} }
func boolV(b bool) *pb.Value     { return &pb.Value{Kind: &pb.Value_BooleanValue{BooleanValue: b}} }
func choiceV(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_ChoiceValue{ChoiceValue: s}} }
func moduleV(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_ModuleValue{ModuleValue: s}} }
func embV(e ...float32) *pb.Value {
	return &pb.Value{Kind: &pb.Value_EmbeddingValue{EmbeddingValue: &pb.Embedding{Values: e}}}
}
func tensorV(dtype string, data []byte, shape ...int64) *pb.Value {
	return &pb.Value{Kind: &pb.Value_TensorValue{TensorValue: &pb.Tensor{Dtype: dtype, Shape: shape, Data: data}}}
}

// watcher reads one watch stream on its own goroutine into a channel, so
// tests can wait for the next update with a timeout (as Consul's
// getNextEvent does) instead of blocking in Recv.
type watcher struct {
	t       *testing.T
	cancel  context.CancelFunc
	updates chan *pb.VariableUpdate
	done    chan struct{}
	err     error // the stream's end status; written before done is closed
}

// watch opens a WatchVariables stream and returns once the server has
// registered the subscription (the response headers arrived).
func (h *harness) watch(req *pb.WatchVariablesRequest) *watcher {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := h.client.WatchVariables(ctx, req)
	if err != nil {
		cancel()
		h.t.Fatalf("WatchVariables: %v", err)
	}
	if _, err := stream.Header(); err != nil {
		cancel()
		h.t.Fatalf("WatchVariables headers: %v", err)
	}
	w := &watcher{t: h.t, cancel: cancel, updates: make(chan *pb.VariableUpdate, 4096), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			u, err := stream.Recv()
			if err != nil {
				if err != io.EOF {
					w.err = err
				}
				return
			}
			w.updates <- u
		}
	}()
	h.t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

// watchErr opens a watch that is expected to fail and returns its status.
func (h *harness) watchErr(req *pb.WatchVariablesRequest) error {
	h.t.Helper()
	stream, err := h.client.WatchVariables(h.ctx(), req)
	if err != nil {
		return err
	}
	u, err := stream.Recv()
	if err == nil {
		h.t.Fatalf("watch did not fail; first update %v", u)
	}
	return err
}

// next returns the next update, failing if none comes or the stream ends.
func (w *watcher) next() *pb.VariableUpdate {
	w.t.Helper()
	select {
	case u := <-w.updates:
		return u
	case <-time.After(waitTimeout):
		w.t.Fatal("timed out waiting for an update")
	case <-w.done:
		select {
		case u := <-w.updates:
			return u
		default:
		}
		w.t.Fatalf("stream ended (%v) while an update was expected", w.err)
	}
	return nil
}

// nextData is next, skipping heartbeats.
func (w *watcher) nextData() *pb.VariableUpdate {
	w.t.Helper()
	for {
		if u := w.next(); u.GetUpdateType() != "heartbeat" {
			return u
		}
	}
}

// end waits for the stream to end and returns its status (nil: OK). Any
// update still unread fails the test, heartbeats excepted.
func (w *watcher) end() error {
	w.t.Helper()
	select {
	case <-w.done:
	case <-time.After(waitTimeout):
		w.t.Fatal("timed out waiting for the stream to end")
	}
	for {
		select {
		case u := <-w.updates:
			if u.GetUpdateType() != "heartbeat" {
				w.t.Fatalf("unexpected update before the end: %v", u)
			}
		default:
			return w.err
		}
	}
}
