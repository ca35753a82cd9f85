package bench

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/grpcapi/client"
	"github.com/varwatch/varwatch/plugins"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// serverTransport is the in-process servers' grpc-go tuning (Options.Transport).
var serverTransport = grpcapi.DefaultTransport()

// server is an in-process varwatch server on loopback: the engine, the
// gRPC adapter and, when given, the filter host (owned by the caller, who
// closes it), wired as `varwatch serve` wires them.
type server struct {
	addr string
	eng  *engine.Engine
	srv  *grpcapi.Server
	gs   *grpc.Server
}

func startServer(cfg engine.Config, mgr *plugins.Manager) (*server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{addr: lis.Addr().String(), eng: engine.New(cfg)}
	// No per-session stream limit: fan-out and memory put 10k streams on
	// one session (an external server needs
	// --max-watch-streams-per-session 0 for that).
	gcfg := grpcapi.Config{Backend: s.eng, MaxWatchStreamsPerSession: -1}
	if mgr != nil {
		gcfg.Filters = mgr
	}
	s.srv = grpcapi.New(gcfg)
	s.gs = grpc.NewServer(serverOptions()...)
	grpcapi.Register(s.gs, s.srv)
	go func() { _ = s.gs.Serve(lis) }()
	return s, nil
}

// serverOptions are varwatch serve's gRPC server options that shape how
// it serves (the codec, the transport), so that a row measures the server
// as it runs.
func serverOptions() []grpc.ServerOption { return serverTransport.ServerOptions() }

func (s *server) close() {
	s.srv.Shutdown()
	s.gs.Stop()
	s.srv.WaitFeeds()
	_ = s.eng.Close()
}

func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

var sessionSeq atomic.Int64

// vwMode is how varwatch streams are opened.
type vwMode struct {
	batched, coalesce bool
	// mux: the streams of one connection are watches on one Watch stream
	// (the raw stub, no client library), in view.
	mux  bool
	view pb.View
	// goClient: streams are grpcapi/client watches, one Client per
	// connection (its watches share one Watch stream), read by Next.
	goClient  bool
	filters   []*pb.FilterSpec
	scale     float64 // value written = counter * scale (0: 1)
	heartbeat time.Duration
}

// vwSystem is varwatch as a system: one session with float variables
// v0..v(n-1), streams on a few shared connections, writers on their own.
type vwSystem struct {
	addr    string
	mode    vwMode
	own     *server // closed with the system, if started for it
	conns   []*grpc.ClientConn
	clients []*client.Client // goClient mode: the Clients owning conns
	client  pb.UnifiedBridgeClient
	session string
	ids     map[string]int
	names   []string
}

// newVarwatch connects to addr, or to a fresh in-process server (with mgr
// as its filter host) when addr is empty.
func newVarwatch(addr string, mode vwMode, mgr *plugins.Manager, conns int) (*vwSystem, error) {
	v := &vwSystem{addr: addr, mode: mode}
	if v.mode.scale == 0 {
		v.mode.scale = 1
	}
	if addr == "" {
		s, err := startServer(engine.Config{}, mgr)
		if err != nil {
			return nil, err
		}
		v.own, v.addr = s, s.addr
	}
	for range max(conns, 1) {
		if mode.goClient {
			c, err := client.New(v.addr)
			if err != nil {
				v.close()
				return nil, err
			}
			v.clients = append(v.clients, c)
			v.conns = append(v.conns, c.Conn())
			continue
		}
		cc, err := dial(v.addr)
		if err != nil {
			v.close()
			return nil, err
		}
		v.conns = append(v.conns, cc)
	}
	v.client = pb.NewUnifiedBridgeClient(v.conns[0])
	return v, nil
}

func (v *vwSystem) prepare(ctx context.Context, n int) error {
	v.session = fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), sessionSeq.Add(1))
	if _, err := v.client.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: v.session}); err != nil {
		return err
	}
	v.ids = make(map[string]int, n)
	v.names = make([]string, n)
	for k := range n {
		v.names[k] = fmt.Sprintf("v%d", k)
		r, err := v.client.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: v.session, Name: v.names[k],
			Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: -1}}})
		if err != nil {
			return err
		}
		v.ids[r.GetVariable().GetId()] = k
	}
	return nil
}

func (v *vwSystem) watchRequest() *pb.WatchVariablesRequest {
	req := &pb.WatchVariablesRequest{SessionId: v.session, Pattern: "*", Coalesce: v.mode.coalesce, Filters: v.mode.filters}
	if v.mode.heartbeat > 0 {
		req.HeartbeatInterval = durationpb.New(v.mode.heartbeat)
	}
	return req
}

func (v *vwSystem) openStream(ctx context.Context, i int) (stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	c := pb.NewUnifiedBridgeClient(v.conns[i%len(v.conns)])
	s := &vwStream{v: v, cancel: cancel}
	var header func() error
	switch {
	case v.mode.goClient:
		// The watch's first message is the server's greeting heartbeat at
		// its snapshot revision: once Next returned it, the watch is
		// registered.
		s.cw = v.clients[i%len(v.clients)].Watch(ctx, v.watchRequest(), client.WatchOptions{View: v.mode.view, Heartbeats: true})
		header = func() error {
			up, err := s.cw.Next()
			if err == nil && up.GetUpdateType() != "heartbeat" {
				err = fmt.Errorf("first update is %s, not the greeting heartbeat", up.GetUpdateType())
			}
			return err
		}
	case v.mode.batched:
		st, err := c.WatchVariablesBatched(ctx, v.watchRequest())
		if err != nil {
			cancel()
			return nil, err
		}
		s.batched, header = st, func() error { _, err := st.Header(); return err }
	default:
		st, err := c.WatchVariables(ctx, v.watchRequest())
		if err != nil {
			cancel()
			return nil, err
		}
		s.single, header = st, func() error { _, err := st.Header(); return err }
	}
	// The snapshot-revision header is sent once the engine registered the
	// watch: every later write reaches it.
	if err := header(); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

func (v *vwSystem) newWriter(context.Context) (writer, error) {
	cc, err := dial(v.addr)
	if err != nil {
		return nil, err
	}
	return &vwWriter{v: v, cc: cc, c: pb.NewUnifiedBridgeClient(cc)}, nil
}

func (v *vwSystem) close() {
	if v.client != nil && v.session != "" && v.own == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = v.client.CleanupSession(ctx, &pb.CleanupSessionRequest{SessionId: v.session})
		cancel()
	}
	for _, cc := range v.conns {
		_ = cc.Close()
	}
	if v.own != nil {
		v.own.close()
	}
}

type vwStream struct {
	v       *vwSystem
	cancel  context.CancelFunc
	single  grpc.ServerStreamingClient[pb.VariableUpdate]
	batched grpc.ServerStreamingClient[pb.VariableUpdateBatch]
	cw      *client.Watch
	one     [1]*pb.VariableUpdate
	// heartbeats counts heartbeat updates (the memory scenario waits for
	// each stream's first).
	heartbeats int
}

func (s *vwStream) recvRaw() ([]*pb.VariableUpdate, error) {
	if s.cw != nil {
		m, err := s.cw.Next()
		s.one[0] = m
		return s.one[:], err
	}
	if s.batched != nil {
		m, err := s.batched.Recv()
		return m.GetUpdates(), err
	}
	m, err := s.single.Recv()
	s.one[0] = m
	return s.one[:], err
}

func (s *vwStream) recv(buf []event) ([]event, error) {
	for {
		ups, err := s.recvRaw()
		if err != nil {
			return nil, err
		}
		buf = buf[:0]
		for _, up := range ups {
			e, change, err := s.v.event(up)
			if err != nil {
				return nil, err
			}
			if !change {
				s.heartbeats++
				continue
			}
			buf = append(buf, e)
		}
		if len(buf) > 0 {
			return buf, nil
		}
	}
}

// event converts an update: a value change (change true), a heartbeat
// (false), or anything else, which no row expects (an error).
func (v *vwSystem) event(up *pb.VariableUpdate) (e event, change bool, err error) {
	switch up.GetUpdateType() {
	case "value_change":
	case "heartbeat":
		return e, false, nil
	default:
		return e, false, fmt.Errorf("unexpected %s update at revision %d", up.GetUpdateType(), up.GetRevision())
	}
	k, ok := v.ids[up.GetVariableId()]
	if !ok {
		return e, false, fmt.Errorf("update for unknown variable id %q", up.GetVariableId())
	}
	return event{key: k, val: int64(up.GetVariable().GetValue().GetFloatValue() / v.mode.scale),
		rev: up.GetRevision(), count: up.GetCoalescedCount()}, true, nil
}

func (s *vwStream) close() {
	s.cancel()
	if s.cw != nil {
		s.cw.Close()
	}
}

type vwWriter struct {
	v   *vwSystem
	cc  *grpc.ClientConn
	c   pb.UnifiedBridgeClient
	req pb.SetVariablesRequest
}

func (w *vwWriter) set(kv kv) *pb.SetVariableRequest {
	return &pb.SetVariableRequest{SessionId: w.v.session, VariableIdentifier: w.v.names[kv.key],
		Value: &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: float64(kv.val) * w.v.mode.scale}}}
}

func (w *vwWriter) write(ctx context.Context, kvs []kv) error {
	if len(kvs) == 1 {
		_, err := w.c.SetVariable(ctx, w.set(kvs[0]))
		return err
	}
	// Non-atomic: each set is its own write at its own revision, applied in
	// order.
	w.req.SessionId = w.v.session
	w.req.Updates = w.req.Updates[:0]
	for _, kv := range kvs {
		w.req.Updates = append(w.req.Updates, w.set(kv))
	}
	res, err := w.c.SetVariables(ctx, &w.req)
	if err != nil {
		return err
	}
	for _, r := range res.GetResults() {
		if !r.GetSuccess() {
			return fmt.Errorf("set %s: %s", r.GetVariableIdentifier(), r.GetError())
		}
	}
	return nil
}

func (w *vwWriter) close() { _ = w.cc.Close() }
