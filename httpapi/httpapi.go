// Package httpapi is varwatch's HTTP door: the unary RPCs as JSON over
// HTTP, a live watch as Server-Sent Events, and the web console, a single
// page whose assets are embedded in the binary.
//
// It is not a second implementation of the API. Every request is decoded
// into the RPC's proto message and handed, in-process, to the same
// grpcapi.Server method a gRPC call reaches, after the same token check
// (grpcapi.Auth.Authenticate), so validation, limits, tenant scoping and
// the error mapping are the gRPC adapter's own. What this package adds is
// the translation: protojson with the proto field names in and out, the
// gRPC code as an HTTP status, and the gRPC status (with its ErrorInfo) as
// a google.rpc.Status JSON body.
//
// Routes (see routes):
//
//	POST /v1/{Method}         a unary RPC of varwatch.v1.UnifiedBridge, e.g. /v1/SetVariable
//	GET  /v1/watch            a watch as Server-Sent Events (watch.go)
//	POST /v1/watch            the same, the request as a JSON WatchVariablesRequest
//	GET  /v1/health           the gRPC health status, without a token
//	GET  /v1/server           health, watch stream and filter counters (admin tokens only)
//	GET  /                    the console (console.go)
package httpapi

import (
	"context"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/plugins"
)

// Defaults of Config.
const (
	// DefaultMaxRequestBytes bounds a request body, as gRPC's default
	// receive limit bounds a message.
	DefaultMaxRequestBytes = 4 << 20
	// DefaultWriteTimeout bounds one write of a watch stream to a client:
	// a client that stops reading without closing its connection is cut
	// off then, instead of holding its watch (and the engine's buffer for
	// it) for as long as TCP keeps the connection open.
	DefaultWriteTimeout = 30 * time.Second
)

// Config configures a Handler. Only API is required.
type Config struct {
	// API is the gRPC adapter whose methods serve every request.
	API *grpcapi.Server
	// Auth checks tokens, as it does for gRPC; nil means no tokens.
	Auth *grpcapi.Auth
	// Health answers GET /v1/health (the server's grpc.health.v1 service);
	// nil answers SERVING.
	Health healthpb.HealthServer
	// Filters, when not nil, adds the filter plugins' counters to
	// GET /v1/server.
	Filters *plugins.Manager
	// Version is reported by GET /v1/server.
	Version string
	// Logger gets a Debug line per watch stream; nil discards.
	Logger hclog.Logger
	// MaxRequestBytes bounds a request body (DefaultMaxRequestBytes when
	// zero); a larger one is RESOURCE_EXHAUSTED.
	MaxRequestBytes int64
	// WriteTimeout bounds one write of a watch stream (DefaultWriteTimeout
	// when zero).
	WriteTimeout time.Duration
}

// Handler serves the routes of the package doc. Safe for concurrent use.
type Handler struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the Handler over cfg.API.
func New(cfg Config) *Handler {
	if cfg.API == nil {
		panic("httpapi: Config.API is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.routes()
	return h
}

func (h *Handler) routes() {
	h.mux.HandleFunc("GET /v1/watch", h.serveWatch)
	h.mux.HandleFunc("POST /v1/watch", h.serveWatch)
	h.mux.HandleFunc("GET /v1/health", h.serveHealth)
	h.mux.HandleFunc("GET /v1/server", h.serveServer)
	h.mux.HandleFunc("POST /v1/{method}", h.serveUnary)
	h.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, notFoundf("no route %s %s: unary RPCs are POST /v1/{Method}, the watch is GET or POST /v1/watch", r.Method, r.URL.Path))
	})
	h.mux.Handle("/", consoleHandler())
}

// ServeHTTP serves one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// ServiceName prefixes the full method names calls are authenticated for.
const ServiceName = "/varwatch.v1.UnifiedBridge/"

// callContext is the context a call of method runs with: the request's
// context carrying its Authorization header as gRPC metadata and its
// remote address as the peer, checked and scoped by Auth as a gRPC call
// would be. Its error is a gRPC status.
func (h *Handler) callContext(r *http.Request, method string) (context.Context, error) {
	ctx := r.Context()
	if addr, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: addr})
	}
	if vals := r.Header.Values("Authorization"); len(vals) > 0 {
		ctx = metadata.NewIncomingContext(ctx, metadata.MD{"authorization": vals})
	}
	if h.cfg.Auth == nil {
		return ctx, nil
	}
	return h.cfg.Auth.Authenticate(ctx, ServiceName+method)
}

// wantsJSON reports whether a request body is JSON (or absent).
func wantsJSON(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return ct == "" || strings.HasPrefix(ct, "application/json")
}
