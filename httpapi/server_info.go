package httpapi

import (
	"encoding/json"
	"net/http"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/plugins"
)

// Health is the body of GET /v1/health.
type Health struct {
	// Status is the grpc.health.v1 status of the whole server: SERVING,
	// or NOT_SERVING once it has begun to shut down.
	Status string `json:"status"`
}

// ServerInfo is the body of GET /v1/server: what the console shows of the
// server, from what the server already counts.
type ServerInfo struct {
	Health  Health        `json:"health"`
	Version string        `json:"version,omitempty"`
	Watch   WatchStats    `json:"watch"`
	Filters []FilterStats `json:"filters"` // empty when the server runs no filters
}

// WatchStats are grpcapi.Stats (see there), gRPC and HTTP watches together.
type WatchStats struct {
	Streams         int               `json:"streams"`
	LaggingStreams  int               `json:"lagging_streams"`
	ChainFeeds      int               `json:"chain_feeds"`
	Delivered       map[string]uint64 `json:"delivered"`
	Coalesced       uint64            `json:"coalesced"`
	StreamEnds      map[string]uint64 `json:"stream_ends"`
	LimitRejections map[string]uint64 `json:"limit_rejections"`
	// Watches are the running watches furthest behind (grpcapi.Stats).
	Watches []WatchInfo `json:"watches"`
}

// WatchInfo is one running watch (grpcapi.WatchStat).
type WatchInfo struct {
	Session string `json:"session"`
	RPC     string `json:"rpc"`
	Pending int    `json:"pending"`
	Lagging bool   `json:"lagging"`
}

// FilterStats are one filter plugin's plugins.Stats (see there).
type FilterStats struct {
	Name     string            `json:"name"`
	In       uint64            `json:"in"`
	Passed   uint64            `json:"passed"`
	Dropped  uint64            `json:"dropped"`
	Replaced uint64            `json:"replaced"`
	Restarts uint64            `json:"restarts"`
	Errors   map[string]uint64 `json:"errors"`
}

func watchStats(s grpcapi.Stats) WatchStats {
	ws := make([]WatchInfo, len(s.Watches))
	for i, w := range s.Watches {
		ws[i] = WatchInfo{Session: w.Session, RPC: w.RPC, Pending: w.Pending, Lagging: w.Lagging}
	}
	return WatchStats{Streams: s.WatchStreams, LaggingStreams: s.LaggingStreams, ChainFeeds: s.ChainFeeds, Delivered: s.Delivered,
		Coalesced: s.Coalesced, StreamEnds: s.StreamEnds, LimitRejections: s.LimitRejections, Watches: ws}
}

func filterStats(ss []plugins.Stats) []FilterStats {
	out := make([]FilterStats, len(ss))
	for i, s := range ss {
		out[i] = FilterStats{Name: s.Name, In: s.In, Passed: s.Passed, Dropped: s.Dropped, Replaced: s.Replaced, Restarts: s.Restarts, Errors: s.Errors}
	}
	return out
}

// serveHealth serves GET /v1/health without a token, as the gRPC health
// service is served; 503 while not SERVING, so a plain HTTP probe works.
func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	hs := h.health(r)
	code := http.StatusOK
	if hs.Status != healthpb.HealthCheckResponse_SERVING.String() {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, hs)
}

func (h *Handler) health(r *http.Request) Health {
	if h.cfg.Health == nil {
		return Health{Status: healthpb.HealthCheckResponse_SERVING.String()}
	}
	resp, err := h.cfg.Health.Check(r.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		return Health{Status: healthpb.HealthCheckResponse_UNKNOWN.String()}
	}
	return Health{Status: resp.GetStatus().String()}
}

// serveServer serves GET /v1/server. Its counters are the whole server's,
// every tenant's streams together, so a tenant token is refused.
func (h *Handler) serveServer(w http.ResponseWriter, r *http.Request) {
	ctx, err := h.callContext(r, "ServerInfo")
	if err != nil {
		writeStatus(w, err)
		return
	}
	if tenant, ok := engine.TenantFrom(ctx); ok {
		writeStatus(w, status.Errorf(codes.PermissionDenied, "server counters are for admin tokens; this token is tenant %s's", tenant))
		return
	}
	info := ServerInfo{Health: h.health(r), Version: h.cfg.Version, Watch: watchStats(h.cfg.API.Stats()), Filters: []FilterStats{}}
	if h.cfg.Filters != nil {
		info.Filters = filterStats(h.cfg.Filters.Stats())
	}
	writeJSON(w, http.StatusOK, info)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeStatus(w, status.Errorf(codes.Internal, "encoding the response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
