package engine

import (
	"context"
	"math/bits"
	"slices"
	"time"
)

// Stats is a snapshot of the engine's counters, for metrics.
type Stats struct {
	// Sessions and Variables are live now (Variables over all sessions).
	Sessions  int64
	Variables int64
	// SessionsCreated, SessionsExpired (TTL ran out) and SessionsClosed
	// (CloseSession) count since start.
	SessionsCreated uint64
	SessionsExpired uint64
	SessionsClosed  uint64
	// Sets counts value changes applied (an atomic multi-set of n counts
	// n); Revisions counts revisions made, over all sessions.
	Sets      uint64
	Revisions uint64
	// HistoryBytes is the estimated size of every session's history.
	HistoryBytes int64
	// QueueDepth is how many commands waited for the loop when Stats was
	// called, out of QueueCapacity (Config.QueueSize).
	QueueDepth    int
	QueueCapacity int
	// BatchSizes is the distribution of commands applied per loop cycle
	// (Stats itself is one command).
	BatchSizes Histogram
	// LimitRejections counts refused requests by limit name (LimitSessions,
	// ...); every engine limit has an entry.
	LimitRejections map[string]uint64
}

// Histogram is a distribution over fixed buckets.
type Histogram struct {
	// Bounds are the buckets' inclusive upper bounds, ascending; a last
	// bucket without bound (+Inf) follows them.
	Bounds []float64
	// Counts has len(Bounds)+1 entries: observations per bucket, not
	// cumulative.
	Counts []uint64
	Sum    float64
}

// Count is the number of observations.
func (h Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// batchBounds are the buckets of Stats.BatchSizes: powers of two up to
// the default MaxBatch, so the bucket of n is found with one bit count.
var batchBounds = [...]float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

// counts are the loop's running totals. Owned by the loop goroutine: the
// hot path pays a plain increment, never an atomic or a lock, and Stats
// reads them with a command, in the loop.
type counts struct {
	sets, revisions                                  uint64
	sessionsCreated, sessionsExpired, sessionsClosed uint64
	variables                                        int64
	limits                                           [len(limitNames)]uint64
	batches                                          [len(batchBounds) + 1]uint64
	batchSum                                         uint64
}

// cycle records a loop cycle that applied n commands (0: a timer tick).
func (c *counts) cycle(n int) {
	if n > 0 {
		i := bits.Len(uint(n - 1)) // the bucket of n: the first bound >= n
		c.batches[min(i, len(batchBounds))]++
		c.batchSum += uint64(n)
	}
}

// Stats returns a snapshot of the engine's counters. It is one command
// through the loop (read at scrape time, it costs the hot path nothing),
// so it waits behind the commands queued before it, or until ctx ends.
// After Close it fails with ErrClosed.
func (e *Engine) Stats(ctx context.Context) (Stats, error) {
	depth := len(e.cmds)
	c := &statsCmd{}
	s, err := run(ctx, e, c, &c.reply)
	s.QueueDepth, s.QueueCapacity = depth, cap(e.cmds)
	return s, err
}

type statsCmd struct{ reply[Stats] }

func (c *statsCmd) apply(st *state) {
	n := &st.counts
	s := Stats{
		Sessions:        int64(len(st.sessions)),
		Variables:       n.variables,
		SessionsCreated: n.sessionsCreated,
		SessionsExpired: n.sessionsExpired,
		SessionsClosed:  n.sessionsClosed,
		Sets:            n.sets,
		Revisions:       n.revisions,
		HistoryBytes:    int64(st.histBytes),
		BatchSizes: Histogram{
			Bounds: slices.Clone(batchBounds[:]),
			Counts: slices.Clone(n.batches[:]),
			Sum:    float64(n.batchSum),
		},
		LimitRejections: make(map[string]uint64, len(limitNames)),
	}
	for i, name := range limitNames {
		s.LimitRejections[name] = n.limits[i]
	}
	c.set(s, nil)
}

// Lagging reports whether the subscriber is falling behind: at least half
// of its buffer waits, or, for a coalescing subscription, changes waiting
// for it were merged (or will be) because it did not drain them in time.
func (s *Subscription) Lagging() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.coalesce {
		// Changes in the feed merge only as they are drained or spilled;
		// more of them than variables watched means some will.
		return s.dead > 0 || !s.draining && s.routed-s.taken > s.filter.watched()
	}
	n := s.queued()
	return s.err == nil && n > 0 && 2*n >= s.limit
}

// countRemoval counts a removed session: expired if its TTL had run out at
// now, closed otherwise (CloseSession refreshes the TTL before removing).
func (st *state) countRemoval(s *session, now time.Time) {
	if now.Before(s.expiresAt) {
		st.counts.sessionsClosed++
	} else {
		st.counts.sessionsExpired++
	}
	st.counts.variables -= int64(len(s.vars))
}
