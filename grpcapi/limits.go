package grpcapi

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
)

// Limits the server enforces itself. The engine enforces those on its
// state (engine.LimitSessions, engine.LimitVariablesPerSession,
// engine.LimitValueBytes) in its loop; these are about the transport:
//
//   - Watch streams are counted here, not in the engine, because a stream
//     and an engine subscription are not one to one: the filtered streams
//     of one chain and session share a single engine subscription (their
//     chain feed, see filter.go). What a stream costs (a handler goroutine,
//     an HTTP/2 stream, a send buffer) is the transport's.
//   - Identifiers per request bound the work and the answer of one call
//     before the engine is asked.
//
// Each refusal is a *engine.LimitError, so that toStatus maps every limit,
// the engine's and these, to RESOURCE_EXHAUSTED with the same details.
const (
	// LimitWatchStreams bounds the watch streams of the server
	// (Config.MaxWatchStreams).
	LimitWatchStreams = "max_watch_streams"
	// LimitWatchStreamsPerSession bounds the watch streams of one session
	// (Config.MaxWatchStreamsPerSession).
	LimitWatchStreamsPerSession = "max_watch_streams_per_session"
	// LimitRequestIdentifiers bounds the variables one request names:
	// variable_identifiers of GetVariables and of a watch, updates of
	// SetVariables (Config.MaxRequestIdentifiers).
	LimitRequestIdentifiers = "max_request_identifiers"
	// LimitTenantWatchStreams bounds the watch streams of one tenant
	// (Config.TenantMaxWatchStreams, or its TenantQuota in the token
	// file), so that one tenant cannot take every stream of the server.
	LimitTenantWatchStreams = "tenant_max_watch_streams"
)

// Defaults of the server's limits: what a zero Config field means. A
// negative field means no limit.
const (
	DefaultMaxWatchStreams           = 100000
	DefaultMaxWatchStreamsPerSession = 1000
	DefaultMaxRequestIdentifiers     = 10000
	// DefaultTenantMaxWatchStreams is a tenth of the server's.
	DefaultTenantMaxWatchStreams = DefaultMaxWatchStreams / 10
)

// Message size limits, for the grpc.MaxRecvMsgSize and grpc.MaxSendMsgSize
// options of the server (set where the grpc.Server is built).
const (
	// DefaultMaxRecvMsgSize is gRPC's own default receive limit.
	DefaultMaxRecvMsgSize = 4 << 20
	// MinMaxSendMsgSize is the smallest send limit that lets every
	// message sendBatches builds through: it cuts messages at
	// hardBatchBytes (plus one message's framing), derived from gRPC's
	// default 4 MiB receive limit that clients have. It is also the
	// default: a larger message would be refused by a client with
	// default settings anyway.
	MinMaxSendMsgSize = hardBatchBytes + 64<<10
)

// serverLimitNames index the server's per-limit rejection counters.
var serverLimitNames = [...]string{LimitWatchStreams, LimitWatchStreamsPerSession, LimitRequestIdentifiers, LimitTenantWatchStreams}

const (
	limStreams = iota
	limStreamsPerSession
	limIdentifiers
	limTenantStreams
)

// limitOr is n, or def when n is zero (negative: no limit).
func limitOr(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

// refuse counts a hit of the server's limit lim and builds its error.
func (s *Server) refuse(lim, value int, detail string) error {
	s.stats.limits[lim].Add(1)
	return &engine.LimitError{Limit: serverLimitNames[lim], Value: int64(value), Detail: detail}
}

// checkIdentifiers refuses a request naming more than
// MaxRequestIdentifiers variables; field names the list.
func (s *Server) checkIdentifiers(n int, field string) error {
	if s.maxIdents < 0 || n <= s.maxIdents {
		return nil
	}
	return toStatus(s.refuse(limIdentifiers, s.maxIdents, field+" has "+strconv.Itoa(n)+" entries"))
}

// streamSlots counts the running watch streams, in total, per session and
// per tenant.
//
// # Notes
//
// Guarded by mu; taken once when a stream starts and once when it ends,
// never per update.
type streamSlots struct {
	max, perSession int // negative: no limit
	perTenant       int // the default of a tenant's quota; negative: no limit

	mu        sync.Mutex
	total     int
	bySession map[string]int // sessions with at least one stream
	byTenant  map[string]int // tenants with at least one stream
}

// acquireStream takes a slot for a stream of session, opened by ctx's
// tenant if it has one (engine.WithTenant), or refuses it; release gives
// it back. The tenant's quota is the one its token brought (TenantQuota),
// or the server's default.
func (s *Server) acquireStream(ctx context.Context, session string) (release func(), err error) {
	l := &s.slots
	tenant, scoped := engine.TenantFrom(ctx)
	perTenant := l.perTenant
	if q := quotaFrom(ctx); q.MaxWatchStreams != 0 {
		perTenant = q.MaxWatchStreams
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch n, t := l.bySession[session], l.byTenant[tenant]; {
	case scoped && perTenant >= 0 && t >= perTenant:
		return nil, toStatus(s.refuse(limTenantStreams, perTenant,
			"tenant "+strconv.Quote(tenant)+" has "+strconv.Itoa(t)+" watch streams"))
	case l.max >= 0 && l.total >= l.max:
		return nil, toStatus(s.refuse(limStreams, l.max, "the server serves "+strconv.Itoa(l.total)+" watch streams"))
	case l.perSession >= 0 && n >= l.perSession:
		return nil, toStatus(s.refuse(limStreamsPerSession, l.perSession,
			"session "+strconv.Quote(session)+" has "+strconv.Itoa(n)+" watch streams"))
	}
	l.total++
	l.bySession[session]++
	if scoped {
		l.byTenant[tenant]++
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.total--
		if l.bySession[session]--; l.bySession[session] == 0 {
			delete(l.bySession, session)
		}
		if !scoped {
			return
		}
		if l.byTenant[tenant]--; l.byTenant[tenant] == 0 {
			delete(l.byTenant, tenant)
		}
	}, nil
}

// quotaDetails adds to st, for a *engine.LimitError, a QuotaFailure
// detail naming the limit, with what was asked as its description (the
// ErrorInfo, reason LIMIT_EXCEEDED, is toStatus's). Other errors leave st
// as it is.
func quotaDetails(st *status.Status, err error) *status.Status {
	var le *engine.LimitError
	if !errors.As(err, &le) {
		return st
	}
	value := strconv.FormatInt(le.Value, 10)
	with, derr := st.WithDetails(&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{
		{Subject: le.Limit, Description: le.Detail + " (limit " + value + ")"}}})
	if derr != nil {
		return st
	}
	return with
}
