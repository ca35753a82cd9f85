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
// server. Only what the server already counts is here; per-stream lag is
// not tracked by the server, only how many streams lag.
type ServerInfo struct {
	Health  Health          `json:"health"`
	Version string          `json:"version,omitempty"`
	Watch   grpcapi.Stats   `json:"watch"`
	Filters []plugins.Stats `json:"filters"` // empty when the server runs no filters
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
	info := ServerInfo{Health: h.health(r), Version: h.cfg.Version, Watch: h.cfg.API.Stats(), Filters: []plugins.Stats{}}
	if h.cfg.Filters != nil {
		info.Filters = h.cfg.Filters.Stats()
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
