package grpcapi

import (
	"cmp"
	"slices"
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
	// Watches are the running watches furthest behind, most events waiting
	// first, at most MaxWatchStats of them (every watch of a Watch stream
	// counts on its own).
	Watches []WatchStat
}

// WatchStat is one running watch: its session, the RPC it runs on, and
// how far behind it is.
type WatchStat struct {
	Session string
	RPC     string // Watch, WatchVariables or WatchVariablesBatched
	// Pending is how many events wait to be sent (a coalescing watch
	// counts merged changes once); Lagging as for LaggingStreams.
	Pending int
	Lagging bool
}

// MaxWatchStats bounds Stats.Watches, so that a scrape stays cheap with
// 100,000 watches.
const MaxWatchStats = 50

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
	live map[lagger]watchTag // the sources of running watches
}

// lagger is a source that can tell whether it is falling behind: an
// *engine.Subscription or a *filterfeed.Member.
type lagger interface {
	Lagging() bool
	Pending() int
}

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
	out.LaggingStreams, out.Watches = st.watches()
	return out
}

// watches counts the running watches that lag and lists the MaxWatchStats
// furthest behind, most events waiting first.
func (st *serverStats) watches() (lagging int, list []WatchStat) {
	st.mu.Lock()
	list = make([]WatchStat, 0, len(st.live))
	sources := make([]lagger, 0, len(st.live))
	for l, tag := range st.live {
		list = append(list, WatchStat{Session: tag.session, RPC: tag.rpc})
		sources = append(sources, l)
	}
	st.mu.Unlock()
	// Each source takes its own lock: outside st.mu, so that no watch
	// starting or ending waits for the scrape.
	for i, l := range sources {
		list[i].Pending, list[i].Lagging = l.Pending(), l.Lagging()
		if list[i].Lagging {
			lagging++
		}
	}
	slices.SortFunc(list, func(a, b WatchStat) int {
		if c := cmp.Compare(b.Pending, a.Pending); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Session, b.Session), cmp.Compare(a.RPC, b.RPC))
	})
	return lagging, list[:min(len(list), MaxWatchStats)]
}

// watchTag is what Stats says of a tracked watch besides its source's.
type watchTag struct{ session, rpc string }

// track registers a watch's source for LaggingStreams and Watches until
// the returned function is called.
func (st *serverStats) track(src source, session, rpc string) func() {
	l, ok := src.(lagger)
	if !ok {
		return func() {}
	}
	st.mu.Lock()
	if st.live == nil {
		st.live = make(map[lagger]watchTag)
	}
	st.live[l] = watchTag{session, rpc}
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
