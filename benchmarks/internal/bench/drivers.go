package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// system is what the shared scenarios (delivery, fan-out, latency, filters)
// need from varwatch or a peer: keys to write, streams that watch all of
// them, and writers. One system value serves one row.
type system interface {
	// prepare creates keys 0..n-1 with a value no write uses.
	prepare(ctx context.Context, n int) error
	// openStream starts a stream watching every key; once it returns,
	// every later write reaches it.
	openStream(ctx context.Context, i int) (stream, error)
	// newWriter returns a writer with its own connection.
	newWriter(ctx context.Context) (writer, error)
	close()
}

type stream interface {
	// recv returns the next updates (value changes only), reusing buf.
	recv(buf []event) ([]event, error)
	close()
}

type kv struct {
	key int
	val int64
}

type writer interface {
	// write applies kvs in order, each as its own write, and returns once
	// all are acknowledged.
	write(ctx context.Context, kvs []kv) error
	close()
}

// streamOpts: how a stream must be verified.
type streamOpts struct {
	scheme   scheme
	coalesce bool
	ordered  bool
	// onEvent, if set, sees every received event (latency).
	onEvent func(now time.Time, e event)
}

// openStreams opens n streams, a few at a time, each with a receiving
// goroutine feeding its checker. stop ends them.
func openStreams(ctx context.Context, sys system, n int, so streamOpts) (checkers []*checker, stop func(), err error) {
	if g, ok := sys.(groupOpener); ok {
		if groups := g.groups(n); groups != nil {
			return openGroups(ctx, g, groups, n, so)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	streams := make([]stream, n)
	checkers = make([]*checker, n)
	stop = func() {
		cancel()
		mu.Lock()
		for _, s := range streams {
			if s != nil {
				s.close()
			}
		}
		mu.Unlock()
		wg.Wait()
	}
	sem := make(chan struct{}, 32)
	errc := make(chan error, 1)
	var opening sync.WaitGroup
	for i := range n {
		checkers[i] = newChecker(so.scheme, so.coalesce, so.ordered)
		sem <- struct{}{}
		opening.Add(1)
		go func() {
			defer opening.Done()
			defer func() { <-sem }()
			s, err := sys.openStream(ctx, i)
			if err != nil {
				select {
				case errc <- fmt.Errorf("opening stream %d: %w", i, err):
				default:
				}
				return
			}
			mu.Lock()
			streams[i] = s
			mu.Unlock()
			c := checkers[i]
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf []event
				for {
					evs, err := s.recv(buf)
					if err != nil {
						if ctx.Err() == nil {
							c.fail("stream ended: %v", err)
						}
						return
					}
					if so.onEvent != nil {
						now := time.Now()
						for _, e := range evs {
							so.onEvent(now, e)
						}
					}
					if !c.add(evs) {
						return
					}
					buf = evs[:0]
				}
			}()
		}()
	}
	opening.Wait()
	select {
	case err := <-errc:
		stop()
		return nil, nil, err
	default:
	}
	return checkers, stop, nil
}

// throughputRun is a delivery row: writers write flat out for the
// duration, never more than window writes ahead of the slowest stream (so
// queues stay bounded and the rate is what the streams sustain), then
// every stream must have seen everything.
type throughputRun struct {
	streams, writers, keys int
	window                 int64
	batch                  int
	duration, drain        time.Duration
	so                     streamOpts
	// valueOf maps the writer's per-key counter to the value written
	// (identity unless a filter needs spacing).
}

type throughputResult struct {
	elapsed  time.Duration
	writes   int64
	updates  int64 // received, all streams
	changes  int64 // writes the updates stand for, all streams
	checkers []*checker
}

func (t throughputRun) run(ctx context.Context, sys system) (res throughputResult, err error) {
	if err := sys.prepare(ctx, t.keys); err != nil {
		return res, fmt.Errorf("prepare: %w", err)
	}
	cs, stop, err := openStreams(ctx, sys, t.streams, t.so)
	if err != nil {
		return res, err
	}
	defer stop()
	ws := make([]writer, t.writers)
	for i := range ws {
		if ws[i], err = sys.newWriter(ctx); err != nil {
			return res, fmt.Errorf("writer: %w", err)
		}
		defer ws[i].close()
	}
	minProgress := func() int64 {
		m := int64(1) << 62
		for _, c := range cs {
			m = min(m, c.progress.Load())
		}
		return m
	}
	var written atomic.Int64
	lastWritten := make([]int64, t.keys)
	start := time.Now()
	deadline := start.Add(t.duration)
	var wg sync.WaitGroup
	errc := make(chan error, t.writers)
	for w, wr := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var own []int
			for k := w; k < t.keys; k += t.writers {
				own = append(own, k)
			}
			counters := make([]int64, t.keys)
			next := 0
			batch := make([]kv, 0, t.batch)
			for time.Now().Before(deadline) {
				for written.Load()-minProgress() > t.window {
					if err := firstFailure(cs); err != nil {
						errc <- err
						return
					}
					if time.Now().After(deadline.Add(t.drain)) {
						errc <- errors.New("streams stopped making progress")
						return
					}
					time.Sleep(50 * time.Microsecond)
				}
				batch = batch[:0]
				for range t.batch {
					k := own[next%len(own)]
					next++
					counters[k]++
					batch = append(batch, kv{k, counters[k]})
				}
				if err := wr.write(ctx, batch); err != nil {
					errc <- err
					return
				}
				written.Add(int64(len(batch)))
			}
			for _, k := range own {
				lastWritten[k] = counters[k] // keys are disjoint across writers
			}
		}()
	}
	wg.Wait()
	writeEnd := time.Now()
	select {
	case err := <-errc:
		if ferr := firstFailure(cs); ferr != nil {
			return res, ferr
		}
		return res, fmt.Errorf("write: %w", err)
	default:
	}
	last, err := waitAll(cs, t.so.scheme.target(lastWritten), t.drain)
	if err != nil {
		return res, err
	}
	res.elapsed = max(last.Sub(start), writeEnd.Sub(start))
	res.writes = written.Load()
	for _, c := range cs {
		res.updates += c.updates.Load()
		res.changes += c.changes.Load()
	}
	res.checkers = cs
	return res, nil
}

// openLoopRun is a fan-out or latency row: one writer offers writes at a
// fixed rate, on schedule whether or not earlier ones are done (through
// lanes, each owning some keys so that each key's writes stay in order),
// and latency is measured from each write's scheduled time, so queueing
// anywhere shows up in it.
type openLoopRun struct {
	streams, keys, rate, lanes int
	duration, drain            time.Duration
	// pipelined: one writer publishes each write on schedule without
	// waiting for the earlier ones (the system's asyncWriter), instead of
	// lanes of writes that each wait for their answer.
	pipelined bool
	// Hooks, if set: before the streams open (after prepare), and when
	// the last write was acknowledged (before the streams drain).
	beforeStreams, afterWrites func()
}

type openLoopResult struct {
	elapsed  time.Duration // to the last stream's last update
	writing  time.Duration // to the last acknowledgement
	offered  int64
	writes   int64 // acknowledged
	updates  int64
	hist     *hist  // set to each stream's receipt
	acks     *hist  // set to acknowledgement
	mem      memUse // peak growth while writing
	lateStop bool   // the writer could not keep the schedule and gave up writes
}

func (o openLoopRun) run(ctx context.Context, sys system) (res openLoopResult, err error) {
	if err := sys.prepare(ctx, o.keys); err != nil {
		return res, fmt.Errorf("prepare: %w", err)
	}
	h, acks := &hist{}, &hist{}
	interval := time.Second / time.Duration(o.rate)
	base := memBaseline()
	var start atomic.Int64 // UnixNano; set before the first write
	start.Store(time.Now().Add(time.Hour).UnixNano())
	so := streamOpts{scheme: globalScheme(o.keys), ordered: true, onEvent: func(now time.Time, e event) {
		sched := start.Load() + e.val*int64(interval)
		h.record(time.Duration(now.UnixNano() - sched))
	}}
	if o.beforeStreams != nil {
		o.beforeStreams()
	}
	cs, stop, err := openStreams(ctx, sys, o.streams, so)
	if err != nil {
		return res, err
	}
	defer stop()
	lw := &loopWrites{total: int64(o.rate) * int64(o.duration) / int64(time.Second), interval: interval, keys: o.keys,
		acks: acks, lastWritten: make([]int64, o.keys), hardStop: time.Now().Add(2*o.duration + time.Second), drain: o.drain}
	copy(lw.lastWritten, so.scheme.init)
	var write func() error
	if o.pipelined {
		as, ok := sys.(asyncSystem)
		if !ok {
			return res, fmt.Errorf("%T has no pipelined writer", sys)
		}
		aw, err := as.newAsyncWriter(ctx)
		if err != nil {
			return res, fmt.Errorf("writer: %w", err)
		}
		defer aw.close()
		write = func() error { return lw.pipelined(ctx, aw) }
	} else {
		wr, err := sys.newWriter(ctx)
		if err != nil {
			return res, fmt.Errorf("writer: %w", err)
		}
		defer wr.close()
		write = func() error { return lw.lanes(ctx, wr, o.lanes) }
	}

	stopMem := memPeak(base, 100*time.Millisecond)
	t0 := time.Now()
	start.Store(t0.UnixNano())
	lw.t0 = t0
	werr := write()
	writeEnd := time.Now()
	res.mem = stopMem()
	if o.afterWrites != nil {
		o.afterWrites()
	}
	if werr != nil {
		return res, fmt.Errorf("write: %w", werr)
	}
	lastWritten := lw.lastWritten
	last, err := waitAll(cs, so.scheme.target(lastWritten), o.drain)
	if err != nil {
		return res, err
	}
	// The live heap is known only as of the last GC: one more, with the
	// streams still open, catches a row too short or too quiet to have
	// had one while writing.
	if after := memBaseline(); after.heap+after.stack-base.heap-base.stack > res.mem.heap+res.mem.stack {
		res.mem = memUse{after.heap - base.heap, after.stack - base.stack}
	}
	res.elapsed = max(last.Sub(t0), writeEnd.Sub(t0))
	res.writing = writeEnd.Sub(t0)
	res.writes = lw.written.Load()
	for _, c := range cs {
		res.updates += c.updates.Load()
	}
	res.hist, res.acks, res.offered = h, acks, lw.total
	res.lateStop = lw.gaveUp.Load()
	return res, nil
}

// loopWrites is the writing of an open-loop row: write g (0, 1, ...) is
// due at t0 + g*interval and sets key g%keys to g.
type loopWrites struct {
	total       int64
	t0          time.Time
	interval    time.Duration
	keys        int
	acks        *hist // due time to acknowledgement
	lastWritten []int64
	hardStop    time.Time // past it, the writer gives up the writes left
	drain       time.Duration
	written     atomic.Int64
	gaveUp      atomic.Bool
}

func (lw *loopWrites) due(g int64) time.Time { return lw.t0.Add(time.Duration(g) * lw.interval) }

// acked records write g's acknowledgement, now.
func (lw *loopWrites) acked(g int64) {
	lw.acks.record(time.Since(lw.due(g)))
	lw.lastWritten[g%int64(lw.keys)] = g
	lw.written.Add(1)
}

// lanes hands each write, when due, to one of n lanes (by key, so that a
// key's writes stay in order), each making one blocking write at a time.
func (lw *loopWrites) lanes(ctx context.Context, wr writer, n int) error {
	lanes := make([]chan int64, n)
	for i := range lanes {
		lanes[i] = make(chan int64, lw.total+1)
	}
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for _, lane := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kvs := make([]kv, 1)
			for g := range lane {
				if time.Now().After(lw.hardStop) {
					lw.gaveUp.Store(true)
					for range lane {
					}
					return
				}
				kvs[0] = kv{int(g % int64(lw.keys)), g}
				if err := wr.write(ctx, kvs); err != nil {
					errc <- err
					for range lane {
					}
					return
				}
				lw.acked(g) // keys are disjoint across lanes
			}
		}()
	}
	for g := range lw.total {
		if d := time.Until(lw.due(g)); d > 0 {
			time.Sleep(d)
		}
		lanes[int(g%int64(lw.keys))%n] <- g
	}
	for _, l := range lanes {
		close(l)
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// pipelined publishes each write when due, without waiting for the
// earlier ones, and stamps acknowledgements as it sees them: after each
// publish (so, at this rate, within one interval of their arrival) and,
// once all are published, every 100 µs until the last. Like the lanes it
// gives up the writes still to publish at hardStop.
func (lw *loopWrites) pipelined(ctx context.Context, aw asyncWriter) error {
	var seen, published int64
	see := func() error {
		n, err := aw.acked()
		for ; seen < n; seen++ {
			lw.acked(seen)
		}
		return err
	}
	for g := range lw.total {
		if time.Now().After(lw.hardStop) {
			lw.gaveUp.Store(true)
			break
		}
		if d := time.Until(lw.due(g)); d > 0 {
			time.Sleep(d)
		}
		if err := aw.publish(kv{int(g % int64(lw.keys)), g}); err != nil {
			return err
		}
		published++
		if err := see(); err != nil {
			return err
		}
	}
	// Writes published are on their way: wait for their answers (a slow
	// system's, late, count in its latency) up to the drain timeout.
	for seen < published {
		if time.Now().After(lw.hardStop.Add(lw.drain)) {
			return fmt.Errorf("%d writes not acknowledged %s after the writing should have ended", published-seen, lw.drain)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(100 * time.Microsecond)
		if err := see(); err != nil {
			return err
		}
	}
	return nil
}

// firstFailure is the first stream's verification failure, if any.
func firstFailure(cs []*checker) error {
	for i, c := range cs {
		if err := c.failed(); err != nil {
			return fmt.Errorf("stream %d: %w", i, err)
		}
	}
	return nil
}

func (r *Row) setLatency(h *hist) {
	r.P50 = float64(h.quantile(0.50)) / 1e6
	r.P99 = float64(h.quantile(0.99)) / 1e6
	r.P999 = float64(h.quantile(0.999)) / 1e6
}
