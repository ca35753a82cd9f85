package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"

	"github.com/varwatch/varwatch/cluster"
	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// vwCluster is varwatch scaled out, in-process on loopback: n varwatch
// nodes (each cluster.Start's engine behind a gRPC server, with
// linearizable reads, as `varwatch serve --cluster` wires them) over an
// n-server JetStream cluster keeping their log with n replicas. It serves
// every row of the cluster scenario; each row has a session of its own.
type vwCluster struct {
	js    *natstest.Cluster
	dir   string // the JetStream servers' stores
	nodes []*vwNode
}

// vwNode is one varwatch node and its gRPC server.
type vwNode struct {
	addr string
	node *cluster.Node
	srv  *grpcapi.Server
	gs   *grpc.Server
}

func startVWCluster(ctx context.Context, n int) (*vwCluster, error) {
	dir, err := os.MkdirTemp("", "varwatch-bench-jscluster-")
	if err != nil {
		return nil, err
	}
	js, err := natstest.New(n, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	c := &vwCluster{js: js, dir: dir}
	// One node at a time: the first creates the stream (retrying while
	// JetStream elects its meta leader), the others find it.
	for i := range n {
		nd, err := startVWNode(ctx, js.URL(), n)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("varwatch node %d: %w", i, err)
		}
		c.nodes = append(c.nodes, nd)
	}
	return c, nil
}

func startVWNode(ctx context.Context, url string, replicas int) (*vwNode, error) {
	n, err := cluster.Start(ctx, cluster.Config{URL: url, Replicas: replicas}, engine.Config{})
	if err != nil {
		return nil, err
	}
	select {
	case <-n.Ready():
	case <-ctx.Done():
		_ = n.Close()
		return nil, ctx.Err()
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = n.Close()
		return nil, err
	}
	nd := &vwNode{addr: lis.Addr().String(), node: n}
	// No per-session stream limit, as startServer: the fan-out rows put
	// all their streams on one session.
	nd.srv = grpcapi.New(grpcapi.Config{Backend: grpcapi.Clustered(n.Engine, n), MaxWatchStreamsPerSession: -1})
	nd.gs = grpc.NewServer(serverOptions()...)
	grpcapi.Register(nd.gs, nd.srv)
	go func() { _ = nd.gs.Serve(lis) }()
	return nd, nil
}

func (c *vwCluster) addrs(nodes ...int) []string {
	var as []string
	for _, i := range nodes {
		as = append(as, c.nodes[i].addr)
	}
	return as
}

func (c *vwCluster) close() {
	for _, nd := range c.nodes {
		nd.srv.Shutdown()
		nd.gs.Stop()
		nd.srv.WaitFeeds()
		_ = nd.node.Close()
	}
	c.js.Close()
	_ = os.RemoveAll(c.dir)
}

// vwSpread is varwatch as a system whose streams and writers are spread
// over several servers sharing one state (the nodes of a cluster): stream
// i's connection goes to watchAt[i%len(watchAt)], blocking writers go
// round-robin to writeAt, and the pipelined writer (vwAsyncSystem) to
// writeAt[0]. Everything else is vwSystem's, so the rows check exactly
// what every other varwatch row checks.
type vwSpread struct {
	*vwSystem
	writeAt []string
	// next is the writer to place next; newWriter is called by the row's
	// goroutine only.
	next int
}

// newSpread connects conns connections round-robin to watchAt; the
// session is prepared through the first.
func newSpread(mode vwMode, watchAt, writeAt []string, conns int) (*vwSpread, error) {
	if len(watchAt) == 0 || len(writeAt) == 0 {
		return nil, errors.New("a spread system needs a server to watch on and one to write to")
	}
	v := &vwSystem{addr: writeAt[0], mode: mode}
	if v.mode.scale == 0 {
		v.mode.scale = 1
	}
	for i := range max(conns, 1) {
		cc, err := dial(watchAt[i%len(watchAt)])
		if err != nil {
			v.close()
			return nil, err
		}
		v.conns = append(v.conns, cc)
	}
	v.client = pb.NewUnifiedBridgeClient(v.conns[0])
	return &vwSpread{vwSystem: v, writeAt: writeAt}, nil
}

func (s *vwSpread) newWriter(context.Context) (writer, error) {
	addr := s.writeAt[s.next%len(s.writeAt)]
	s.next++
	cc, err := dial(addr)
	if err != nil {
		return nil, err
	}
	return &vwWriter{v: s.vwSystem, cc: cc, c: pb.NewUnifiedBridgeClient(cc)}, nil
}
