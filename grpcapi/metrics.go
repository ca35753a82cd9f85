package grpcapi

import (
	"sync"
	"sync/atomic"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
)

// Reasons a watch stream ends, the keys of Stats.StreamEnds.
const (
	EndSessionClosed = "session_closed" // OK after session_closed
	EndClientCancel  = "client_cancel"  // the client canceled or its deadline passed
	EndSlowConsumer  = "slow_consumer"  // cut off: fell a buffer behind
	EndShutdown      = "shutdown"       // the server is shutting down
	EndFilterFailed  = "filter_failed"  // a filter failed with on_error=close
	EndCompacted     = "compacted"      // resume from a revision the history no longer holds
	EndLimit         = "limit"          // refused by a limit (streams, identifiers)
	EndRejected      = "rejected"       // refused: bad request, unknown session or variable, ...
	EndError         = "error"          // anything else (a send failed, a server bug)
)

// EndReasons lists every stream end reason, in a fixed order.
var EndReasons = [...]string{EndSessionClosed, EndClientCancel, EndSlowConsumer, EndShutdown,
	EndFilterFailed, EndCompacted, EndLimit, EndRejected, EndError}

// UpdateTypes lists the update types of Stats.Delivered, in a fixed order.
var UpdateTypes = func() []string {
	var ts []string
	for t := engine.EventInitialValue; t <= engine.EventSessionClosed; t++ {
		ts = append(ts, t.String())
	}
	return ts
}()

// Stats is a snapshot of the server's counters, for metrics.
type Stats struct {
	// WatchStreams are the watch handlers running now (ActiveStreams).
	WatchStreams int
	// LaggingStreams are the running streams falling behind: at least half
	// of their buffer waits, or (coalescing) changes were merged because
	// they did not drain in time.
	LaggingStreams int
	// ChainFeeds are the filter chain feeds running (ActiveFeeds).
	ChainFeeds int
	// Delivered counts updates sent to clients, by update type (every
	// entry of UpdateTypes is present).
	Delivered map[string]uint64
	// Coalesced counts changes merged into a later change of the same
	// variable before delivery (an update with coalesced_count n counts
	// n-1).
	Coalesced uint64
	// StreamEnds counts ended watch streams by reason (every entry of
	// EndReasons is present).
	StreamEnds map[string]uint64
	// LimitRejections counts requests refused by the server's own limits
	// (LimitWatchStreams, ...; every one is present).
	LimitRejections map[string]uint64
}

// serverStats are the server's counters.
//
// # Notes
//
// The counters are read and written with atomics only; live is guarded by
// mu (taken when a stream starts and ends, and at scrape time).
type serverStats struct {
	delivered [engine.EventSessionClosed + 1]atomic.Uint64 // by EventType
	coalesced atomic.Uint64
	ends      [len(EndReasons)]atomic.Uint64
	limits    [len(serverLimitNames)]atomic.Uint64

	mu   sync.Mutex
	live map[lagger]struct{} // the sources of running pumps
}

// lagger is a source that can tell whether it is falling behind: an
// *engine.Subscription or a *filterfeed.Member.
type lagger interface{ Lagging() bool }

// Stats returns a snapshot of the server's counters. Safe for concurrent
// use; LaggingStreams asks every running stream, briefly taking each one's
// lock, so call it at scrape time, not per update.
func (s *Server) Stats() Stats {
	st := &s.stats
	out := Stats{
		WatchStreams:    s.ActiveStreams(),
		ChainFeeds:      s.ActiveFeeds(),
		Delivered:       make(map[string]uint64, len(UpdateTypes)),
		Coalesced:       st.coalesced.Load(),
		StreamEnds:      make(map[string]uint64, len(EndReasons)),
		LimitRejections: make(map[string]uint64, len(serverLimitNames)),
	}
	for t := engine.EventInitialValue; t <= engine.EventSessionClosed; t++ {
		out.Delivered[t.String()] = st.delivered[t].Load()
	}
	for i, r := range EndReasons {
		out.StreamEnds[r] = st.ends[i].Load()
	}
	for i, name := range serverLimitNames {
		out.LimitRejections[name] = st.limits[i].Load()
	}
	st.mu.Lock()
	live := make([]lagger, 0, len(st.live))
	for l := range st.live {
		live = append(live, l)
	}
	st.mu.Unlock()
	for _, l := range live {
		if l.Lagging() {
			out.LaggingStreams++
		}
	}
	return out
}

// track registers a pump's source for LaggingStreams until the returned
// function is called.
func (st *serverStats) track(src source) func() {
	l, ok := src.(lagger)
	if !ok {
		return func() {}
	}
	st.mu.Lock()
	if st.live == nil {
		st.live = make(map[lagger]struct{})
	}
	st.live[l] = struct{}{}
	st.mu.Unlock()
	return func() {
		st.mu.Lock()
		delete(st.live, l)
		st.mu.Unlock()
	}
}

// sent counts evs, which were just delivered to a client.
func (st *serverStats) sent(evs []engine.Event) {
	var n [engine.EventSessionClosed + 1]uint64
	var merged uint64
	for i := range evs {
		if t := evs[i].Type; t >= engine.EventInitialValue && t <= engine.EventSessionClosed {
			n[t]++
		}
		if c := evs[i].Coalesced; c > 1 {
			merged += uint64(c - 1)
		}
	}
	for t, c := range n {
		if c > 0 {
			st.delivered[t].Add(c)
		}
	}
	if merged > 0 {
		st.coalesced.Add(merged)
	}
}

// ended counts a watch stream that ended with err (what its handler
// returned).
func (st *serverStats) ended(err error) {
	reason := endReason(err)
	for i, r := range EndReasons {
		if r == reason {
			st.ends[i].Add(1)
			return
		}
	}
}

// endReason classifies the status a watch handler returned.
func endReason(err error) string {
	if err == nil {
		return EndSessionClosed
	}
	s, _ := status.FromError(err)
	for _, d := range s.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok {
			continue
		}
		switch info.GetReason() {
		case ReasonSlowConsumer:
			return EndSlowConsumer
		case ReasonShuttingDown:
			return EndShutdown
		case ReasonFilterFailed:
			return EndFilterFailed
		case ReasonCompacted:
			return EndCompacted
		case ReasonLimitExceeded:
			return EndLimit
		}
	}
	switch s.Code() {
	case codes.Canceled, codes.DeadlineExceeded:
		return EndClientCancel
	case codes.Unavailable:
		return EndShutdown
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.Unimplemented,
		codes.PermissionDenied, codes.Unauthenticated, codes.OutOfRange:
		return EndRejected
	}
	return EndError
}
