package plugins

import (
	"context"
	"sync/atomic"
	"time"
)

// deadlineCtx is the per-batch deadline of one instance, reused from batch
// to batch: context.WithTimeout would allocate a context and a timer per
// batch (8 allocations, about a microsecond here); this re-arms one timer.
// wazero, configured with WithCloseOnContextDone, watches Done during the
// call and closes the module when it is closed. Done also closes when the
// caller's context ends, so a caller that gives up interrupts the call.
//
// Once Done has closed the context is spent: arm and disarm report it, and
// a new one replaces it.
//
// # Notes
//
// arm, disarm and release are called by the instance's caller goroutine.
// state is changed only by compare-and-swap: the timer's goroutine and the
// parent's AfterFunc goroutine race to end the context, and release bumps
// the generation so that a callback registered for an earlier parent, if
// it runs late, cannot end the context of a later call. Whoever ends it
// closes done. wazero's watcher goroutine only reads Done and Err.
type deadlineCtx struct {
	parent context.Context
	d      time.Duration
	timer  *time.Timer
	done   chan struct{}
	// state is generation<<2 | status.
	state atomic.Uint64
	// watched is the parent whose cancellation is forwarded, and
	// stopWatch undoes that; a worker that passes the same context to
	// every Run registers once.
	watched   context.Context
	stopWatch func() bool
}

// Statuses in the low bits of deadlineCtx.state.
const (
	statusLive uint64 = iota
	statusExpired
	statusCanceled
	statusMask = 3
)

func newDeadlineCtx(d time.Duration) *deadlineCtx {
	c := &deadlineCtx{d: d, done: make(chan struct{})}
	c.timer = time.AfterFunc(time.Hour, func() { c.end(c.state.Load()>>2, statusExpired) })
	c.timer.Stop()
	return c
}

// end moves generation gen from live to status, closing done; it does
// nothing if the context already ended or moved on to a later generation.
func (c *deadlineCtx) end(gen, status uint64) {
	if c.state.CompareAndSwap(gen<<2|statusLive, gen<<2|status) {
		close(c.done)
	}
}

func (c *deadlineCtx) live() bool { return c.state.Load()&statusMask == statusLive }

// arm starts the deadline for one call under parent. It reports false when
// the context was spent between calls (an earlier caller's context ended
// after its call returned): the caller then needs a new deadlineCtx.
func (c *deadlineCtx) arm(parent context.Context) bool {
	if parent != c.watched {
		c.release()
	}
	if !c.live() {
		return false
	}
	c.parent = parent
	if parent != c.watched && parent.Done() != nil {
		gen := c.state.Load() >> 2
		c.watched = parent
		c.stopWatch = context.AfterFunc(parent, func() { c.end(gen, statusCanceled) })
	}
	c.timer.Reset(c.d)
	return true
}

// disarm stops the deadline after the call; false means the context is
// spent (the deadline passed or the caller's context ended).
func (c *deadlineCtx) disarm() bool { return c.timer.Stop() && c.live() }

// release stops forwarding the parent's cancellation and moves a live
// context to the next generation, disowning any callback still in flight.
func (c *deadlineCtx) release() {
	if c.stopWatch != nil {
		c.stopWatch()
		c.stopWatch, c.watched = nil, nil
	}
	for {
		s := c.state.Load()
		if s&statusMask != statusLive || c.state.CompareAndSwap(s, (s>>2+1)<<2|statusLive) {
			return
		}
	}
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *deadlineCtx) Done() <-chan struct{}       { return c.done }
func (c *deadlineCtx) Value(key any) any           { return c.parent.Value(key) }

func (c *deadlineCtx) Err() error {
	switch c.state.Load() & statusMask {
	case statusExpired:
		return context.DeadlineExceeded
	case statusCanceled:
		return context.Canceled
	}
	return nil
}
