package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
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
func (ms *metricsServer) serve(log hclog.Logger, eng *engine.Engine, api *grpcapi.Server, mgr *plugins.Manager, j metrics.Journal) {
	if ms.lis == nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(metrics.NewRegistry(metrics.Sources{Engine: eng, API: api, Plugins: mgr, Journal: j, Build: buildInfo()})))
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
