package grpcapi

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Pacing the watch senders under overload.
//
// A change to a variable that 1,000 streams watch over 1,000 connections
// is 1,000 responses: on each side a write(2) or read(2) and a few
// goroutine wake-ups, about 50 µs of CPU each on this project's 2-core
// machine with client and server in one process. At that price a response
// per change per stream saturates the machine at about 20 changes a
// second, and the writer's own call, which needs a few goroutine hops to
// be answered, waits behind the crowd at every hop: the writer got 2% of
// its rate with no watchers.
//
// So when the server is sending more than half the responses its cores can
// afford (responsesPerCore a second each, counted over the last window), a
// stream that is woken waits a moment before it drains: linger, its share
// of the budget (streams / budget). What its watches receive meanwhile
// goes out in the same response, so under overload a response carries
// many changes and the cost per change falls, while at low load nothing
// waits: a change goes out at once, alone.
//
// Few streams are paced too: 2 streams fed 10,000 changes a second are
// 20,000 responses, a whole core, and the writer's round trips queued
// behind them (issue 13's latency row). Their share is a fraction of a
// millisecond (0.2 ms each for 2 on 2 cores), which a busy server's timers
// keep; minLinger only drops pauses too short to save a response.
const (
	responsesPerCore = 5_000
	paceWindow       = 100 * time.Millisecond
	minLinger        = 50 * time.Microsecond
	maxLinger        = 100 * time.Millisecond
)

// sendRate counts the server's responses per window. Lock-free: every
// sender adds to it.
type sendRate struct {
	window atomic.Int64 // the current window's number (unix time / paceWindow)
	count  atomic.Int64 // responses in it
	last   atomic.Int64 // responses in the window before
}

// sent adds n responses.
func (r *sendRate) sent(n int, now time.Time) {
	w := now.UnixNano() / int64(paceWindow)
	if cur := r.window.Load(); cur != w && r.window.CompareAndSwap(cur, w) {
		if w == cur+1 {
			r.last.Store(r.count.Swap(0))
		} else {
			r.last.Store(0) // idle for a window or more
			r.count.Store(0)
		}
	}
	r.count.Add(int64(n))
}

// hot reports whether the last window's responses passed the budget.
func (r *sendRate) hot(now time.Time) bool {
	w := now.UnixNano() / int64(paceWindow)
	cur := r.window.Load()
	if w > cur+1 {
		return false // nothing sent for a whole window
	}
	last := r.last.Load()
	if w == cur+1 {
		last = r.count.Load() // the current window is over
	}
	return 2*last > budget()*int64(paceWindow)/int64(time.Second)
}

// budget is how many responses a second the server affords.
func budget() int64 { return int64(responsesPerCore * runtime.GOMAXPROCS(0)) }

// linger is the pause of a woken stream on a hot server with streams
// watch streams open.
func linger(streams int64) time.Duration {
	d := time.Duration(streams) * time.Second / time.Duration(budget())
	if d < minLinger {
		return 0
	}
	return min(d, maxLinger)
}

// pause is how long a woken sender waits before it drains (zero: not at
// all).
func (s *Server) pause() time.Duration {
	if d := testPace.Load(); d > 0 {
		return time.Duration(d)
	}
	if d := linger(s.streams.Load()); d > 0 && s.rate.hot(time.Now()) {
		return d
	}
	return 0
}

// testPace, when set by a test, makes every woken sender pause that long,
// as on a hot server, so the randomized tests cover paced streams.
var testPace atomic.Int64
