package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/internal/metrics"
	"github.com/varwatch/varwatch/plugins"
)

// serveOps is serve's limits and its metrics endpoint.
type serveOps struct {
	maxSessions, maxVars, maxValueBytes int
	maxStreams, maxStreamsPerSession    int
	maxIdents                           int
	maxRecv, maxSend                    int
	// The default quota of every tenant (a token file line may set its
	// tenant's own).
	tenantSessions, tenantVars, tenantBytes, tenantStreams int

	// metadata limits, per map and per session
	maxMetaEntries, maxMetaKey, maxMetaValue int
	maxMetaBytes, maxSessionMeta             int

	metricsListen string
	pprof         bool
}

func addServeOpsFlags(fs *flag.FlagSet) *serveOps {
	o := &serveOps{}
	fs.IntVar(&o.maxSessions, "max-sessions", engine.DefaultMaxSessions, "live sessions the server holds (0: no limit)")
	fs.IntVar(&o.maxVars, "max-variables-per-session", engine.DefaultMaxVariablesPerSession, "variables one session holds (0: no limit)")
	fs.IntVar(&o.maxValueBytes, "max-value-bytes", engine.DefaultMaxValueBytes, "`bytes` of one value: a string, choice or module's text, 4 per embedding element, a tensor's data (0: no limit)")
	fs.IntVar(&o.maxMetaEntries, "max-metadata-entries", engine.DefaultMaxMetadataEntries, "entries of one metadata map: a session's, a variable's (merged over its sets) or one request's (0: no limit)")
	fs.IntVar(&o.maxMetaKey, "max-metadata-key-bytes", engine.DefaultMaxMetadataKeyBytes, "`bytes` of one metadata key (0: no limit)")
	fs.IntVar(&o.maxMetaValue, "max-metadata-value-bytes", engine.DefaultMaxMetadataValueBytes, "`bytes` of one metadata value (0: no limit)")
	fs.IntVar(&o.maxMetaBytes, "max-metadata-bytes", engine.DefaultMaxMetadataBytes, "`bytes` of keys and values of one metadata map, as --max-metadata-entries (0: no limit)")
	fs.IntVar(&o.maxSessionMeta, "max-session-metadata-bytes", engine.DefaultMaxSessionMetadataBytes, "`bytes` of metadata keys and values of a session and all its variables together (0: no limit)")
	fs.IntVar(&o.maxStreams, "max-watch-streams", grpcapi.DefaultMaxWatchStreams, "watch streams the server serves at once (0: no limit)")
	fs.IntVar(&o.maxStreamsPerSession, "max-watch-streams-per-session", grpcapi.DefaultMaxWatchStreamsPerSession, "watch streams of one session at once (0: no limit)")
	fs.IntVar(&o.maxIdents, "max-request-identifiers", grpcapi.DefaultMaxRequestIdentifiers, "variables one GetVariables, SetVariables or watch request may name (0: no limit)")
	fs.IntVar(&o.tenantSessions, "tenant-max-sessions", engine.DefaultTenantMaxSessions, "live sessions of one tenant (0: no limit; a token file line may set its tenant's: max_sessions=N)")
	fs.IntVar(&o.tenantVars, "tenant-max-variables", engine.DefaultTenantMaxVariables, "variables of all the sessions of one tenant (0: no limit; token file: max_variables=N)")
	fs.IntVar(&o.tenantBytes, "tenant-max-bytes", engine.DefaultTenantMaxBytes, "`bytes` of the values of all the variables of one tenant, measured as for --max-value-bytes (0: no limit; token file: max_bytes=N)")
	fs.IntVar(&o.tenantStreams, "tenant-max-watch-streams", grpcapi.DefaultTenantMaxWatchStreams, "watch streams of one tenant at once (0: no limit; token file: max_watch_streams=N)")
	fs.IntVar(&o.maxRecv, "max-recv-message-bytes", grpcapi.DefaultMaxRecvMsgSize, "largest gRPC message the server accepts, in `bytes`")
	fs.IntVar(&o.maxSend, "max-send-message-bytes", grpcapi.MinMaxSendMsgSize, "largest gRPC message the server sends, in `bytes` (at least the default, which fits every batch of WatchVariablesBatched); a write whose update or answer would not fit is refused before it applies")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "`address` serving Prometheus metrics at /metrics (empty: off)")
	fs.BoolVar(&o.pprof, "pprof", false, "serve net/http/pprof at /debug/pprof/ on the --metrics-listen address")
	return o
}

func (o *serveOps) validate() error {
	switch {
	case o.maxSessions < 0 || o.maxVars < 0 || o.maxValueBytes < 0 || o.maxStreams < 0 || o.maxStreamsPerSession < 0 || o.maxIdents < 0,
		o.maxMetaEntries < 0 || o.maxMetaKey < 0 || o.maxMetaValue < 0 || o.maxMetaBytes < 0 || o.maxSessionMeta < 0:
		return usagef("--max-* limits must not be negative (0: no limit)")
	case o.tenantSessions < 0 || o.tenantVars < 0 || o.tenantBytes < 0 || o.tenantStreams < 0:
		return usagef("--tenant-max-* limits must not be negative (0: no limit)")
	case o.maxRecv <= 0:
		return usagef("--max-recv-message-bytes must be positive")
	case o.maxSend < grpcapi.MinMaxSendMsgSize:
		return usagef("--max-send-message-bytes must be at least %d (the batches of WatchVariablesBatched)", grpcapi.MinMaxSendMsgSize)
	case o.maxValueBytes > 0 && o.maxRecv < o.maxValueBytes+64<<10:
		return usagef("--max-recv-message-bytes must be at least --max-value-bytes plus 64KiB, or a value at the limit cannot be sent")
	case o.maxValueBytes > 0 && o.maxSend < 2*o.maxValueBytes+64<<10:
		return usagef("--max-send-message-bytes must be at least twice --max-value-bytes plus 64KiB (an update carries the old and the new value)")
	case o.maxValueBytes > 0 && o.maxMetaBytes > 0 && o.maxMetaValue > 0 &&
		o.maxSend < 2*o.maxValueBytes+2*o.maxMetaBytes+2*o.maxMetaValue+64<<10:
		return usagef("--max-send-message-bytes must be at least twice --max-value-bytes, --max-metadata-bytes and --max-metadata-value-bytes plus 64KiB (an update carries the old and the new value, the variable's and the write's metadata, and the write's source twice), so that every update within the limits can be sent")
	case o.pprof && o.metricsListen == "":
		return usagef("--pprof needs --metrics-listen")
	}
	return nil
}

// noLimit maps a flag's 0 ("no limit") to the configs' negative.
func noLimit(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// engineLimits puts the engine's limits into its config, and the send
// limit, so that the engine refuses a write whose update would not fit.
func (o *serveOps) engineLimits(ec *engine.Config) {
	ec.MaxSessions, ec.MaxVariablesPerSession, ec.MaxValueBytes = noLimit(o.maxSessions), noLimit(o.maxVars), noLimit(o.maxValueBytes)
	ec.TenantQuota = engine.Quota{MaxSessions: noLimit(o.tenantSessions), MaxVariables: noLimit(o.tenantVars), MaxBytes: noLimit(o.tenantBytes)}
	ec.MaxMetadataEntries, ec.MaxMetadataKeyBytes, ec.MaxMetadataValueBytes = noLimit(o.maxMetaEntries), noLimit(o.maxMetaKey), noLimit(o.maxMetaValue)
	ec.MaxMetadataBytes, ec.MaxSessionMetadataBytes = noLimit(o.maxMetaBytes), noLimit(o.maxSessionMeta)
	ec.MaxSendMessageBytes = o.maxSend
}

// serverLimits puts the gRPC server's limits into its config.
func (o *serveOps) serverLimits(gc *grpcapi.Config) {
	gc.MaxWatchStreams, gc.MaxWatchStreamsPerSession = noLimit(o.maxStreams), noLimit(o.maxStreamsPerSession)
	gc.MaxRequestIdentifiers = noLimit(o.maxIdents)
	gc.TenantMaxWatchStreams = noLimit(o.tenantStreams)
}

// grpcOptions are the message size limits.
func (o *serveOps) grpcOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(o.maxRecv), grpc.MaxSendMsgSize(o.maxSend)}
}

// metricsServer is the HTTP server of /metrics and pprof.
type metricsServer struct {
	pprof bool
	lis   net.Listener // nil: metrics are off
	hs    *http.Server
	done  chan struct{} // closed when Serve has returned
}

// listenMetrics opens the --metrics-listen address, if any, so that a
// bad address fails serve before anything else starts.
func (o *serveOps) listenMetrics() (*metricsServer, error) {
	ms := &metricsServer{pprof: o.pprof}
	if o.metricsListen == "" {
		return ms, nil
	}
	lis, err := net.Listen("tcp", o.metricsListen)
	if err != nil {
		return nil, fmt.Errorf("metrics listen on %s: %w", o.metricsListen, err)
	}
	ms.lis = lis
	return ms, nil
}

// serve serves /metrics (and pprof, if asked) until stop, and logs
// "metrics listening" with the address.
func (ms *metricsServer) serve(log hclog.Logger, eng *engine.Engine, api *grpcapi.Server, mgr *plugins.Manager) {
	if ms.lis == nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", newServerMetrics(eng, api, mgr))
	if ms.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ms.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ms.done = make(chan struct{})
	go func() {
		defer close(ms.done)
		if err := ms.hs.Serve(ms.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server ended", "error", err)
		}
	}()
	log.Info("metrics listening", "addr", ms.lis.Addr().String(), "pprof", ms.pprof)
}

// stop ends the metrics server, or closes its listener if it never
// served. Called once, by serve's defer.
func (ms *metricsServer) stop() {
	switch {
	case ms.lis == nil:
	case ms.hs == nil:
		_ = ms.lis.Close()
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if ms.hs.Shutdown(ctx) != nil {
			_ = ms.hs.Close() // a long pprof profile or trace: cut it
		}
		<-ms.done
	}
}

// newServerMetrics registers every series of the server. The values are
// read at scrape time from snapshots taken once per scrape (engine.Stats,
// one command through the loop; grpcapi.Server.Stats and
// plugins.Manager.Stats, atomics), so nothing here touches a hot path.
// README.md ("Metrics") lists the series.
func newServerMetrics(eng *engine.Engine, api *grpcapi.Server, mgr *plugins.Manager) *metrics.Registry {
	r := metrics.NewRegistry()
	var es engine.Stats
	var gs grpcapi.Stats
	var ps []plugins.Stats
	r.BeforeScrape(func() {
		// The engine answers through its loop; if it is closed (shutting
		// down) or too busy, the last snapshot stays.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if s, err := eng.Stats(ctx); err == nil {
			es = s
		}
		cancel()
		gs = api.Stats()
		if mgr != nil {
			ps = mgr.Stats()
		}
	})
	f := func(n uint64) float64 { return float64(n) }
	counter := func(name, help string, v func() float64) { r.CounterFunc(name, help, v) }
	gauge := func(name, help string, v func() float64) { r.GaugeFunc(name, help, v) }

	// Engine.
	gauge("varwatch_sessions", "Live sessions.", func() float64 { return float64(es.Sessions) })
	counter("varwatch_sessions_created_total", "Sessions created.", func() float64 { return f(es.SessionsCreated) })
	counter("varwatch_session_expiries_total", "Sessions removed because their TTL ran out.", func() float64 { return f(es.SessionsExpired) })
	counter("varwatch_sessions_closed_total", "Sessions deleted by CleanupSession.", func() float64 { return f(es.SessionsClosed) })
	gauge("varwatch_variables", "Live variables, over all sessions.", func() float64 { return float64(es.Variables) })
	counter("varwatch_sets_total", "Value changes applied (an atomic SetVariables of n counts n).", func() float64 { return f(es.Sets) })
	counter("varwatch_revisions_total", "Revisions made, over all sessions (one per register, set, atomic set or delete).", func() float64 { return f(es.Revisions) })
	gauge("varwatch_history_bytes", "Estimated bytes of every session's resume history.", func() float64 { return float64(es.HistoryBytes) })
	gauge("varwatch_engine_queue_depth", "Commands waiting for the engine loop.", func() float64 { return float64(es.QueueDepth) })
	gauge("varwatch_engine_queue_capacity", "Capacity of the engine's command queue.", func() float64 { return float64(es.QueueCapacity) })
	r.HistogramFunc("varwatch_engine_batch_size", "Commands applied per engine loop cycle.", func() metrics.HistogramValue {
		return metrics.HistogramValue{Bounds: es.BatchSizes.Bounds, Counts: es.BatchSizes.Counts, Sum: es.BatchSizes.Sum}
	})
	r.Collect("varwatch_limit_rejections_total", "Requests refused by a limit (RESOURCE_EXHAUSTED), by limit.", metrics.TypeCounter, func(emit metrics.Emit) {
		// Every limit of either is in its map (their Stats say so), so a
		// new limit shows up here by itself.
		for _, rejections := range []map[string]uint64{es.LimitRejections, gs.LimitRejections} {
			for _, name := range slices.Sorted(maps.Keys(rejections)) {
				emit(f(rejections[name]), metrics.Label{Name: "limit", Value: name})
			}
		}
	})

	// Watch streams.
	gauge("varwatch_watch_streams", "Watch streams being served.", func() float64 { return float64(gs.WatchStreams) })
	gauge("varwatch_watch_streams_lagging", "Watch streams with at least half their buffer waiting, or (coalescing) with changes merged while waiting.",
		func() float64 { return float64(gs.LaggingStreams) })
	gauge("varwatch_filter_chain_feeds", "Filter chain feeds running (one per chain and session).", func() float64 { return float64(gs.ChainFeeds) })
	r.Collect("varwatch_updates_delivered_total", "Updates sent to watch streams, by update type.", metrics.TypeCounter, func(emit metrics.Emit) {
		for _, t := range grpcapi.UpdateTypes {
			emit(f(gs.Delivered[t]), metrics.Label{Name: "type", Value: t})
		}
	})
	counter("varwatch_updates_coalesced_total", "Changes merged into a later change of the same variable before delivery (coalescing streams).",
		func() float64 { return f(gs.Coalesced) })
	counter("varwatch_updates_dropped_total", "Updates dropped by filters (each counted once per chain run, not per stream).", func() float64 {
		var n uint64
		for _, s := range ps {
			n += s.Dropped
		}
		return f(n)
	})
	r.Collect("varwatch_watch_stream_ends_total", "Watch streams ended, by reason.", metrics.TypeCounter, func(emit metrics.Emit) {
		for _, reason := range grpcapi.EndReasons {
			emit(f(gs.StreamEnds[reason]), metrics.Label{Name: "reason", Value: reason})
		}
	})

	// Filters, one series per loaded plugin.
	r.Collect("varwatch_filter_updates_in_total", "Updates that reached the filter.", metrics.TypeCounter, func(emit metrics.Emit) {
		for _, s := range ps {
			emit(f(s.In), metrics.Label{Name: "filter", Value: s.Name})
		}
	})
	r.Collect("varwatch_filter_updates_total", "Updates the filter handled, by result (passed, dropped, replaced).", metrics.TypeCounter, func(emit metrics.Emit) {
		for _, s := range ps {
			emit(f(s.Passed), metrics.Label{Name: "filter", Value: s.Name}, metrics.Label{Name: "result", Value: "passed"})
			emit(f(s.Dropped), metrics.Label{Name: "filter", Value: s.Name}, metrics.Label{Name: "result", Value: "dropped"})
			emit(f(s.Replaced), metrics.Label{Name: "filter", Value: s.Name}, metrics.Label{Name: "result", Value: "replaced"})
		}
	})
	r.Collect("varwatch_filter_errors_total", "Filter batches that failed, by kind of fault.", metrics.TypeCounter, func(emit metrics.Emit) {
		for _, s := range ps {
			for _, kind := range slices.Sorted(maps.Keys(s.Errors)) {
				emit(f(s.Errors[kind]), metrics.Label{Name: "filter", Value: s.Name}, metrics.Label{Name: "kind", Value: kind})
			}
		}
	})
	r.Collect("varwatch_filter_restarts_total", "Filter instances re-created after a fault.", metrics.TypeCounter, func(emit metrics.Emit) {
		for _, s := range ps {
			emit(f(s.Restarts), metrics.Label{Name: "filter", Value: s.Name})
		}
	})

	// Process.
	start := float64(time.Now().UnixNano()) / 1e9
	gauge("process_start_time_seconds", "Start time of the process, in seconds since the Unix epoch.", func() float64 { return start })
	gauge("go_goroutines", "Goroutines that currently exist.", func() float64 { return float64(runtime.NumGoroutine()) })
	return r
}
