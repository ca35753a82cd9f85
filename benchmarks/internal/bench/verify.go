package bench

import (
	"fmt"
	"sync/atomic"
	"time"
)

// event is one change a stream received, in system-neutral form: which key,
// the value written (an integer the writer chose), the system's revision of
// it, and how many writes it stands for (a coalesced update: more than 1).
type event struct {
	key   int
	val   int64
	rev   int64
	count int64
}

// scheme says which values the writers write to each key, so a checker
// knows what every stream must see. Key k receives init[k]+step,
// init[k]+2*step, ... in order; a stream that sees every write sees exactly
// that sequence. A filter that drops writes is modelled by a larger step
// (the deadband passes every fourth of the writer's values).
type scheme struct {
	init []int64
	step int64
}

// counterScheme: key k gets 1, 2, 3, ...; every stream sees every write.
func counterScheme(keys int) scheme {
	return scheme{init: make([]int64, keys), step: 1}
}

// globalScheme: write g (0, 1, 2, ...) goes to key g%keys with value g, so
// the value names the write and its intended send time.
func globalScheme(keys int) scheme {
	s := scheme{init: make([]int64, keys), step: int64(keys)}
	for k := range s.init {
		s.init[k] = int64(k - keys)
	}
	return s
}

// final is the last value of key k a stream must see once lastWritten was
// the last value written to it.
func (s scheme) final(k int, lastWritten int64) int64 {
	if lastWritten <= s.init[k] {
		return s.init[k]
	}
	return s.init[k] + s.step*((lastWritten-s.init[k])/s.step)
}

// target is the progress (see checker.progress) a stream has when it has
// seen everything, given the last value written per key.
func (s scheme) target(lastWritten []int64) int64 {
	var t int64
	for k := range s.init {
		t += s.final(k, lastWritten[k]) - s.init[k]
	}
	return t
}

// checker verifies one stream against its scheme as updates arrive: per
// key, revisions strictly increase and values are exactly the next ones
// written (for a coalescing stream, the value jumps by exactly
// coalesced_count writes, so merged counts add up); across the stream,
// revisions never go down. The first violation is kept and reported.
//
// # Notes
//
// add is called by the stream's receiving goroutine only; progress,
// lastRecv and failed may be read from anywhere.
type checker struct {
	scheme
	coalesce bool
	ordered  bool // revisions must not go down across keys

	last    []int64
	lastRev []int64
	rev     int64

	updates atomic.Int64 // updates received
	changes atomic.Int64 // writes they stand for
	// progress is the sum over keys of (last value seen - init): it reaches
	// scheme.target exactly when the stream has seen everything.
	progress atomic.Int64
	lastRecv atomic.Int64 // UnixNano of the last update
	err      atomic.Pointer[error]
}

func newChecker(s scheme, coalesce, ordered bool) *checker {
	c := &checker{scheme: s, coalesce: coalesce, ordered: ordered,
		last: append([]int64(nil), s.init...), lastRev: make([]int64, len(s.init))}
	for i := range c.lastRev {
		c.lastRev[i] = -1 << 62
	}
	return c
}

func (c *checker) fail(format string, args ...any) {
	err := fmt.Errorf(format, args...)
	c.err.CompareAndSwap(nil, &err)
}

func (c *checker) failed() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return nil
}

// add checks a batch of received events; it returns false once the stream
// is known to be wrong.
func (c *checker) add(evs []event) bool {
	if c.failed() != nil {
		return false
	}
	var prog, changes int64
	for _, e := range evs {
		if e.key < 0 || e.key >= len(c.last) {
			c.fail("update for unknown key %d", e.key)
			return false
		}
		if e.rev <= c.lastRev[e.key] {
			c.fail("key %d: revision %d after %d", e.key, e.rev, c.lastRev[e.key])
			return false
		}
		if c.ordered && e.rev < c.rev {
			c.fail("key %d: revision %d after revision %d on the stream", e.key, e.rev, c.rev)
			return false
		}
		n := max(e.count, 1)
		if n > 1 && !c.coalesce {
			c.fail("key %d: update stands for %d writes on a stream that does not coalesce", e.key, n)
			return false
		}
		if want := c.last[e.key] + c.step*n; e.val != want {
			if c.coalesce {
				c.fail("key %d: value %d standing for %d writes after %d, want %d (merged counts do not add up or a write was lost)", e.key, e.val, n, c.last[e.key], want)
			} else {
				c.fail("key %d: value %d after %d, want %d (lost %d writes, or reordered)", e.key, e.val, c.last[e.key], want, (e.val-want)/c.step)
			}
			return false
		}
		prog += e.val - c.last[e.key]
		changes += n
		c.last[e.key], c.lastRev[e.key], c.rev = e.val, e.rev, e.rev
	}
	if len(evs) > 0 {
		c.updates.Add(int64(len(evs)))
		c.changes.Add(changes)
		c.progress.Add(prog)
		c.lastRecv.Store(time.Now().UnixNano())
	}
	return true
}

// waitAll waits until every checker reached target, one failed, or
// timeout passed. It returns the first error, and otherwise the time the
// last update arrived.
func waitAll(cs []*checker, target int64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		done := true
		for i, c := range cs {
			if err := c.failed(); err != nil {
				return time.Time{}, fmt.Errorf("stream %d: %w", i, err)
			}
			if p := c.progress.Load(); p < target {
				done = false
				if time.Now().After(deadline) {
					return time.Time{}, fmt.Errorf("stream %d: timed out after %s with progress %d of %d (%d updates): writes lost or stream stalled", i, timeout, p, target, c.updates.Load())
				}
			} else if p > target {
				return time.Time{}, fmt.Errorf("stream %d: progress %d beyond %d: received values never written", i, p, target)
			}
		}
		if done {
			var last int64
			for _, c := range cs {
				last = max(last, c.lastRecv.Load())
			}
			return time.Unix(0, last), nil
		}
		time.Sleep(time.Millisecond)
	}
}
