package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/httpapi"
	"github.com/varwatch/varwatch/plugins"
)

func serveCommand() *command {
	return &command{
		name:    "serve",
		summary: "run the varwatch server",
		doc: `Runs the server: the engine behind the gRPC API (service
varwatch.v1.UnifiedBridge), the standard gRPC health service (SERVING while
up) and server reflection, so grpcurl works without .proto files.

It logs "listening" with the address once it accepts connections. On
SIGINT or SIGTERM it stops accepting, ends watch streams with UNAVAILABLE
naming the revision to resume from, lets unary calls in flight finish for
up to --shutdown-timeout, then closes the engine.

Heartbeat intervals below 50ms are raised to 50ms.

A session expires --session-ttl (or its own TTL) after its last use. A
watch open on it is use: a watched session does not expire, and its TTL
starts over when its last watch ends. --watch-keeps-sessions-alive=false
lets watched sessions expire by their TTL; their watches then end with
session_closed.

Filters (WebAssembly plugins, see plugins/README.md) load at start from
--filter flags and/or a --filter-config JSON file; a watch names an
ordered chain of them with its own params, and --default-filters puts a
chain in front of every watch. On SIGHUP the flags' files and the config
file are loaded again: all or nothing, the running filters stay if
anything fails, and the outcome is logged. Per-filter counters are logged
every --filter-stats-interval and at shutdown.

--tls-cert and --tls-key serve TLS; --tls-client-ca requires client
certificates (mutual TLS). --auth-token-file requires a bearer token on
every call but health checks: one token a line, TOKEN for an admin, TOKEN
tenant=NAME for a tenant that sees only its own sessions. A tenant's
sessions, variables, value bytes and watch streams are bounded together by
the --tenant-max-* flags, or by the settings on its token lines
(max_sessions=N ...; see README "Security"). SIGHUP reloads the token file
and the certificates too. Connections idle for
--keepalive-time are pinged; clients may ping every 10s at most. A call
without a valid token is refused as its headers arrive, before its request
is read; --max-concurrent-streams, --max-header-list-bytes and
--handshake-timeout bound what one connection may hold.

Without --data-dir everything is in memory and a restart starts from
nothing. With it, every change is in a write-ahead log in that directory
(fsynced per engine batch unless --fsync says otherwise) before it is
acknowledged or seen by a watcher, snapshots bound the log, and a restart
(after a crash too) continues with the same sessions, incarnations,
revisions and watch histories. See the README's "Durability" section.
With --cluster, --data-dir keeps only the node's newest snapshot (the
stream is its log): a restart starts from it when it is newer than
JetStream's and replays the stream after it.

--cluster nats://host:port[,...] makes the server one node of several
over one NATS JetStream stream (--cluster-stream; --cluster-replicas
JetStream servers keep it): a write is published to the stream and
answered once this node has applied it, in stream order, as every node
does, so every node holds the same sessions, values and revisions. Any
node serves reads and watches, linearizable by default (the node waits
until it has applied the stream as far as it reaches); a call with gRPC
metadata varwatch-consistency: local reads what this node has, and a
write's response header varwatch-position is a position a call on
another node can wait for (request metadata varwatch-position). Health
is NOT_SERVING until the node has caught up with the stream. Every
--cluster-snapshot-every positions the state is stored in JetStream; a
node starts from the newest snapshot and replays only the stream after
it, and the stream is trimmed up to the oldest of the
--cluster-snapshots-kept snapshots (a node that falls further behind
exits, to be restarted). A resume older than the node's history is
replayed from the stream. With JetStream unreachable, writes and default
reads fail with CLUSTER_UNAVAILABLE, as does opening or resuming a
watch; local reads and watches go on, and open watches keep streaming.
See the README's "Running a cluster" section.

--http ADDR (off by default) also serves HTTP on ADDR, with the same TLS
and tokens: the web console at /, every unary RPC as JSON at POST
/v1/{Method} (the request and response messages in protojson with the
proto field names; errors as the HTTP status of their gRPC code with a
google.rpc.Status body), a watch as Server-Sent Events at GET /v1/watch
(resumable with Last-Event-ID), GET /v1/health without a token, and
GET /v1/server for admin tokens. See the README's "Web console" section.`,
		nargs: exactly(0),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			listen := fs.String("listen", DefaultServer, "`address` to listen on (port 0 picks a free port)")
			level := fs.String("log-level", "info", "log `level`: trace, debug, info, warn or error")
			logJSON := fs.Bool("log-json", false, "log one JSON object per line")
			heartbeat := fs.Duration("heartbeat-interval", grpcapi.DefaultHeartbeatInterval, "default watch heartbeat `interval` (a watch may ask for another)")
			ttl := fs.Duration("session-ttl", time.Hour, "`TTL` of sessions created without one")
			watchKeeps := fs.Bool("watch-keeps-sessions-alive", true, "a session does not expire while a watch is open on it; its TTL starts over when the last watch ends (false: watched sessions expire by their TTL, ending their watches)")
			buffer := fs.Int("subscription-buffer", 65536, "updates that may wait for one watch stream before it is cut off (RESOURCE_EXHAUSTED)")
			bufferBytes := fs.Int("subscription-buffer-bytes", engine.DefaultSubscriptionBytes, "`bytes` of updates (estimated memory: values, old values, metadata) that may wait for one watch stream before it is cut off (RESOURCE_EXHAUSTED)")
			histRevs := fs.Int("history-revisions", 10000, "revisions of history kept per session, for resuming watches")
			histBytes := fs.Int("history-bytes", 8<<20, "bytes of history kept per session")
			histTotal := fs.Int("history-total-bytes", 256<<20, "bytes of history kept for all sessions together (the largest histories shrink first)")
			shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "how long to let calls in flight finish on shutdown")
			var filterFlags []string
			fs.Func("filter", "load a filter `plugin` given as name=path.wasm[,key=value...] (repeatable); keys timeout (0: none), on_error (pass, drop, close) and memory_limit are server options, others default params",
				func(v string) error {
					if _, err := plugins.ParseFilterFlag(v); err != nil {
						return err
					}
					filterFlags = append(filterFlags, v)
					return nil
				})
			filterConfig := fs.String("filter-config", "", "JSON `file` of filter plugins and a default chain (format: plugins/README.md)")
			cacheDir := fs.String("filter-cache-dir", "", "`directory` caching compiled filters across restarts")
			defaults := fs.String("default-filters", "", "server-wide default `chain` of filter names, comma-separated, put in front of every watch's chain")
			statsEvery := fs.Duration("filter-stats-interval", 5*time.Minute, "how often to log the filters' counters (0: only at shutdown)")
			security := addServeSecurityFlags(fs)
			ops := addServeOpsFlags(fs)
			durability := addServeDurabilityFlags(fs)
			transport := addServeTransportFlags(fs)
			httpDoor := addServeHTTPFlags(fs)
			clusterFlags := addServeClusterFlags(fs)
			return func([]string) error {
				lvl := hclog.LevelFromString(*level)
				if lvl == hclog.NoLevel {
					return usagef("unknown --log-level %q (want trace, debug, info, warn or error)", *level)
				}
				switch {
				case *heartbeat <= 0:
					return usagef("--heartbeat-interval must be positive")
				case *ttl <= 0:
					return usagef("--session-ttl must be positive")
				case *buffer <= 0:
					return usagef("--subscription-buffer must be positive")
				case *bufferBytes <= 0:
					return usagef("--subscription-buffer-bytes must be positive")
				case *shutdown < 0:
					return usagef("--shutdown-timeout must not be negative")
				case *statsEvery < 0:
					return usagef("--filter-stats-interval must not be negative")
				}
				if err := security.validate(); err != nil {
					return err
				}
				if err := ops.validate(); err != nil {
					return err
				}
				if err := durability.validate(); err != nil {
					return err
				}
				if err := transport.validate(); err != nil {
					return err
				}
				if err := httpDoor.validate(); err != nil {
					return err
				}
				if err := clusterFlags.validate(durability); err != nil {
					return err
				}
				fl := filterLoader{flags: filterFlags, file: *filterConfig, defaults: *defaults}
				log := hclog.New(&hclog.LoggerOptions{
					Name:       "varwatch",
					Level:      lvl,
					Output:     e.stderr,
					JSONFormat: *logJSON,
				})
				return serve(e.ctx, log, serveConfig{
					listen:    *listen,
					heartbeat: *heartbeat,
					engine: engine.Config{SessionTTL: *ttl, ExpireWatchedSessions: !*watchKeeps, SubscriptionBuffer: *buffer, SubscriptionBytes: *bufferBytes,
						HistoryRevisions: *histRevs, HistoryBytes: *histBytes, HistoryTotalBytes: *histTotal},
					shutdown:  *shutdown,
					filters:   fl,
					cacheDir:  *cacheDir,
					stats:     *statsEvery,
					security:  security,
					ops:       ops,
					durable:   durability,
					transport: transport,
					http:      httpDoor,
					cluster:   clusterFlags,
				})
			}
		},
	}
}

type serveConfig struct {
	listen    string
	heartbeat time.Duration
	engine    engine.Config
	shutdown  time.Duration
	filters   filterLoader
	cacheDir  string
	stats     time.Duration
	security  *serveSecurity   // TLS, tokens, keepalive (serve_security.go)
	ops       *serveOps        // limits, metrics (serve_metrics.go)
	durable   *serveDurability // --data-dir (serve_durability.go)
	transport *serveTransport  // per-connection bounds (serve_transport.go)
	http      *serveHTTPFlags  // --http (serve_http.go)
	cluster   *serveCluster    // --cluster (serve_cluster.go)
}

// filterLoader builds the plugins.Config from the filter flags, again on
// every SIGHUP (the files may have changed).
type filterLoader struct {
	flags    []string
	file     string
	defaults string
}

func (fl filterLoader) empty() bool { return len(fl.flags) == 0 && fl.file == "" && fl.defaults == "" }

func (fl filterLoader) load() (plugins.Config, error) {
	var cfg plugins.Config
	if fl.file != "" {
		var err error
		if cfg, err = plugins.LoadConfigFile(fl.file); err != nil {
			return cfg, err
		}
	}
	for _, f := range fl.flags {
		pc, err := plugins.ParseFilterFlag(f)
		if err != nil {
			return cfg, err
		}
		cfg.Plugins = append(cfg.Plugins, pc)
	}
	if fl.defaults != "" {
		cfg.Default = nil
		for _, name := range strings.Split(fl.defaults, ",") {
			if name = strings.TrimSpace(name); name == "" {
				return cfg, fmt.Errorf("--default-filters %q: empty filter name", fl.defaults)
			}
			cfg.Default = append(cfg.Default, plugins.FilterSpec{Name: name})
		}
	}
	if len(cfg.Default) > 0 && len(cfg.Plugins) == 0 {
		return cfg, fmt.Errorf("a default filter chain needs filters: give --filter or --filter-config")
	}
	return cfg, nil
}

// startFilters loads the filters, if any are configured, and reloads them
// on SIGHUP until ctx ends. It returns nil when there are none.
func startFilters(ctx context.Context, log hclog.Logger, cfg serveConfig) (*plugins.Manager, func(), error) {
	if cfg.filters.empty() {
		return nil, func() {}, nil
	}
	pcfg, err := cfg.filters.load()
	if err != nil {
		return nil, nil, err
	}
	pcfg.CacheDir, pcfg.Logger = cfg.cacheDir, log
	mgr, err := plugins.New(ctx, pcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("loading filters: %w", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var tick <-chan time.Time
	ticker := time.NewTicker(max(cfg.stats, time.Second))
	if cfg.stats > 0 {
		tick = ticker.C
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer ticker.Stop()
		for {
			select {
			case <-hup:
				log.Info("SIGHUP: reloading filters")
				pcfg, err := cfg.filters.load()
				if err == nil {
					err = mgr.Reload(ctx, pcfg)
				}
				if err != nil {
					log.Warn("filter reload failed; the loaded filters keep running", "error", err)
				} else {
				}
			case <-tick:
				mgr.LogStats()
			case <-done:
				return
			}
		}
	}()
	stop := func() {
		signal.Stop(hup)
		close(done)
		<-stopped
	}
	return mgr, stop, nil
}

// serve runs the server until ctx ends, then shuts it down in order:
// health NOT_SERVING, no new calls, watch streams ended, calls in flight
// given cfg.shutdown to finish (then cut), engine closed.
func serve(ctx context.Context, log hclog.Logger, cfg serveConfig) error {
	cfg.ops.engineLimits(&cfg.engine)
	var eng *engine.Engine
	var stopEngine func()
	var err error
	if cfg.cluster != nil && cfg.cluster.urls != "" {
		var dataDir string
		if cfg.durable != nil {
			dataDir = cfg.durable.dataDir
		}
		eng, stopEngine, err = cfg.cluster.openNode(ctx, log, cfg.engine, dataDir)
	} else {
		eng, stopEngine, err = cfg.durable.openEngine(log, cfg.engine)
	}
	if err != nil {
		return err
	}
	defer stopEngine()
	metricsSrv, err := cfg.ops.listenMetrics()
	if err != nil {
		return err
	}
	defer metricsSrv.stop()
	door, err := cfg.http.listen()
	if err != nil {
		return err
	}
	defer door.stop(cfg.shutdown)
	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.listen, err)
	}
	secOpts, stopSecurity, err := cfg.security.start(log)
	if err != nil {
		_ = lis.Close()
		return err
	}
	defer stopSecurity()
	mgr, stopFilters, err := startFilters(ctx, log, cfg)
	if err != nil {
		_ = lis.Close()
		return err
	}
	gcfg := grpcapi.Config{Backend: cfg.cluster.backend(eng), Logger: log.Named("grpc"), HeartbeatInterval: cfg.heartbeat}
	if mgr != nil {
		gcfg.Filters = mgr
	}
	cfg.ops.serverLimits(&gcfg)
	api := grpcapi.New(gcfg)
	gs := grpc.NewServer(slices.Concat(secOpts, cfg.ops.grpcOptions(), cfg.transport.grpcOptions())...)
	health := grpcapi.Register(gs, api)
	cfg.cluster.watchReady(ctx, log, health)
	metricsSrv.serve(log, eng, api, mgr, cfg.durable.fsyncs())
	door.serve(log.Named("http"), httpapi.Config{API: api, Auth: cfg.security.auth, Health: health, Filters: mgr,
		Version: Version(), Logger: log.Named("http")}, cfg.security.serverTLS, cfg.http.writeTimeout)

	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	log.Info("listening", "addr", lis.Addr().String(),
		"heartbeat_interval", cfg.heartbeat, "session_ttl", cfg.engine.SessionTTL,
		"watch_keeps_sessions_alive", !cfg.engine.ExpireWatchedSessions,
		"subscription_buffer", cfg.engine.SubscriptionBuffer, "version", Version())

	var fatal error // why serve ends other than by ctx
	select {
	case err := <-served:
		stopFilters()
		if mgr != nil {
			_ = mgr.Close(context.Background())
		}
		return fmt.Errorf("serve: %w", err)
	case <-cfg.cluster.behind():
		fatal = errors.New("this node fell behind the trimmed cluster log and cannot catch up: restart it (it starts from the newest snapshot)")
		log.Error("fell behind the cluster's log; shutting down", "error", fatal)
	case <-ctx.Done():
	}

	log.Info("shutting down", "timeout", cfg.shutdown)
	health.Shutdown()
	api.Shutdown()
	door.stop(cfg.shutdown)
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(cfg.shutdown)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		log.Warn("calls still in flight after the shutdown timeout; cutting them off")
		gs.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		log.Warn("serve ended with an error", "error", err)
	}
	stopFilters()
	if mgr != nil {
		api.WaitFeeds()
		_ = mgr.Close(context.Background()) // logs the final counters
	}
	log.Info("stopped")
	return fatal
}
