package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/varwatch/varwatch/cluster"
	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/journal"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// serveCluster is the --cluster group of serve flags: without --cluster
// the server is a node of its own.
type serveCluster struct {
	urls     string
	replicas int
	stream   string
	creds    string
	tlsCA    string
	tlsCert  string
	tlsKey   string
	start    time.Duration
	every    int
	kept     int
	node     *cluster.Node // set by openNode
}

func addServeClusterFlags(fs *flag.FlagSet) *serveCluster {
	c := &serveCluster{}
	fs.StringVar(&c.urls, "cluster", "", "run as one node of a cluster over NATS JetStream at these `URLs` (nats://host:port, comma-separated): every node applies the same log of writes, and serves reads and watches (see README \"Running a cluster\")")
	fs.IntVar(&c.replicas, "cluster-replicas", 0, "JetStream servers keeping the log, when this node creates it (0: 3 if the NATS cluster has 3 servers or more, else 1)")
	fs.StringVar(&c.stream, "cluster-stream", "VARWATCH", "`name` of the JetStream stream holding the log; every node of one cluster names the same")
	fs.StringVar(&c.creds, "cluster-creds", "", "NATS credentials `file` (a user JWT and its nkey seed), for NATS servers in operator mode")
	fs.StringVar(&c.tlsCA, "cluster-tls-ca", "", "PEM `file` of the CA that signed the NATS servers' certificates (also turns TLS on)")
	fs.StringVar(&c.tlsCert, "cluster-tls-cert", "", "PEM certificate `file` this node shows the NATS servers (with --cluster-tls-key; also turns TLS on)")
	fs.StringVar(&c.tlsKey, "cluster-tls-key", "", "PEM private key `file` of --cluster-tls-cert")
	fs.DurationVar(&c.start, "cluster-connect-timeout", time.Minute, "how long to wait at start for JetStream to be reachable")
	fs.IntVar(&c.every, "cluster-snapshot-every", 10000, "store a snapshot of the state in JetStream every `N` stream positions (give every node the same, so that one stores each); a node starts from the newest and replays the stream after it; 0: never, and the stream is never trimmed")
	fs.IntVar(&c.kept, "cluster-snapshots-kept", 2, "keep the newest `N` snapshots in JetStream; the stream is trimmed up to the oldest of them, so a node may lag about (N-1) times --cluster-snapshot-every positions and still catch up (further behind, it exits and must be restarted)")
	return c
}

func (c *serveCluster) validate(d *serveDurability) error {
	if c.urls == "" {
		if c.replicas != 0 || c.creds != "" || c.tlsCA != "" || c.tlsCert != "" || c.tlsKey != "" || c.every != 10000 || c.kept != 2 {
			return usagef("the --cluster-* flags need --cluster")
		}
		return nil
	}
	switch {
	case d != nil && (d.fsync != "batch" || d.fsyncInterval != 100*time.Millisecond || d.snapshotRecords != 100000 ||
		d.snapshotBytes != 64<<20 || d.truncateCorrupt):
		return usagef("--fsync, --fsync-interval, --snapshot-records, --snapshot-bytes and --truncate-corrupt are for one server's log; " +
			"a node of a cluster keeps no log of its own (--data-dir keeps its snapshot, --cluster-snapshot-every says how often)")
	case c.replicas < 0:
		return usagef("--cluster-replicas must not be negative")
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return usagef("--cluster-tls-cert and --cluster-tls-key go together")
	case c.start <= 0:
		return usagef("--cluster-connect-timeout must be positive")
	case c.every < 0:
		return usagef("--cluster-snapshot-every must not be negative (0: never)")
	case c.kept < 2:
		// With one, the stream is trimmed to the newest snapshot the
		// moment it is stored: every node not there yet falls behind.
		return usagef("--cluster-snapshots-kept must be at least 2")
	}
	return nil
}

// openNode starts the engine as a node of the cluster, keeping its
// snapshot in dataDir if set. The node serves reads at once but reports
// itself caught up only later (watchReady).
func (c *serveCluster) openNode(ctx context.Context, log hclog.Logger, cfg engine.Config, dataDir string) (*engine.Engine, func(), error) {
	unlock := func() {}
	if dataDir != "" {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("--data-dir: %w", err)
		}
		lock, err := journal.LockDir(dataDir) // one node per directory
		if err != nil {
			return nil, nil, err
		}
		unlock = func() { lock.Close() }
	}
	opts, err := c.natsOptions()
	if err != nil {
		unlock()
		return nil, nil, err
	}
	clog := log.Named("cluster")
	cfg.Logf = func(format string, args ...any) { clog.Warn(fmt.Sprintf(format, args...)) }
	sctx, cancel := context.WithTimeout(ctx, c.start)
	defer cancel()
	every := c.every
	if every == 0 {
		every = -1 // cluster.Config's "never"
	}
	n, err := cluster.Start(sctx, cluster.Config{URL: c.urls, Stream: c.stream, Replicas: c.replicas, Options: opts, Logger: clog,
		SnapshotEvery: every, SnapshotsKept: c.kept, Dir: dataDir}, cfg)
	if err != nil {
		unlock()
		return nil, nil, c.explainConnect(err)
	}
	c.node = n
	clog.Info("joined the cluster", "nats", c.urls, "stream", c.stream)
	return n.Engine, func() {
		if err := n.Close(); err != nil {
			clog.Warn("closing the node", "error", err)
		}
		unlock()
	}, nil
}

// backend is the Backend the gRPC server serves: linearizable reads on a
// node of a cluster, and resumes older than its history replayed from the
// stream.
func (c *serveCluster) backend(eng *engine.Engine) grpcapi.Backend {
	if c == nil || c.node == nil {
		return eng
	}
	node := c.node
	return grpcapi.WithReplay(grpcapi.Clustered(eng, node), func(ctx context.Context, req engine.WatchRequest) (grpcapi.ReplayedWatch, error) {
		r, err := node.Replay(ctx, req)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return r, nil
	})
}

// behind is closed if the node fell behind the stream's trim: it can no
// longer catch up, and serve ends so that it is restarted (from the newest
// snapshot). Never closed without --cluster.
func (c *serveCluster) behind() <-chan struct{} {
	if c == nil || c.node == nil {
		return nil
	}
	return c.node.Behind()
}

// watchReady holds health at NOT_SERVING until the node has caught up with
// the log, so that a load balancer sends it nothing it would answer from
// an old state.
func (c *serveCluster) watchReady(ctx context.Context, log hclog.Logger, hs *health.Server) {
	if c == nil || c.node == nil {
		return
	}
	services := []string{"", pb.UnifiedBridge_ServiceDesc.ServiceName}
	for _, s := range services {
		hs.SetServingStatus(s, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	go func() {
		select {
		case <-c.node.Ready():
			for _, s := range services {
				hs.SetServingStatus(s, healthpb.HealthCheckResponse_SERVING)
			}
			log.Info("caught up with the cluster's log: serving")
		case <-ctx.Done():
		}
	}()
}
