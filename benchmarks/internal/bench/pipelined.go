package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// asyncWriter is a writer that does not wait for one write's answer
// before it makes the next: a producer pipelining its writes.
type asyncWriter interface {
	// publish starts kv's write; it blocks only for back-pressure.
	publish(kv kv) error
	// acked returns how many writes are acknowledged (every system here
	// acknowledges in order), or the first write's failure. Called by the
	// publishing goroutine only.
	acked() (int64, error)
	// flush waits until every write published is acknowledged.
	flush(ctx context.Context) error
	close()
}

// asyncSystem is a system with pipelined writers, of a kind it names.
type asyncSystem interface {
	system
	newAsyncWriter(ctx context.Context) (asyncWriter, error)
}

// pipelinedRun is a pipelined row: one writer publishes flat out, never
// more than window writes ahead of the slowest stream, then every stream
// must have seen everything.
type pipelinedRun struct {
	streams, keys   int
	window          int64
	duration, drain time.Duration
}

type pipelinedResult struct {
	acking, elapsed time.Duration // to the last ack; to the last stream's last update
	writes, updates int64
}

func (p pipelinedRun) run(ctx context.Context, sys asyncSystem) (res pipelinedResult, err error) {
	if err := sys.prepare(ctx, p.keys); err != nil {
		return res, fmt.Errorf("prepare: %w", err)
	}
	so := streamOpts{scheme: counterScheme(p.keys), ordered: true}
	cs, stop, err := openStreams(ctx, sys, p.streams, so)
	if err != nil {
		return res, err
	}
	defer stop()
	w, err := sys.newAsyncWriter(ctx)
	if err != nil {
		return res, fmt.Errorf("writer: %w", err)
	}
	defer w.close()
	minProgress := func() int64 {
		m := int64(1) << 62
		for _, c := range cs {
			m = min(m, c.progress.Load())
		}
		return m
	}
	counters := make([]int64, p.keys)
	start := time.Now()
	deadline := start.Add(p.duration)
	var n int64
	for ; n%256 != 0 || time.Now().Before(deadline); n++ {
		if n%256 == 0 {
			for n-minProgress() > p.window {
				if err := firstFailure(cs); err != nil {
					return res, err
				}
				if _, err := w.acked(); err != nil {
					return res, err
				}
				if time.Now().After(deadline.Add(p.drain)) {
					return res, errors.New("streams stopped making progress")
				}
				time.Sleep(50 * time.Microsecond)
			}
			if _, err := w.acked(); err != nil {
				return res, err
			}
		}
		k := int(n % int64(p.keys))
		counters[k]++
		if err := w.publish(kv{k, counters[k]}); err != nil {
			return res, fmt.Errorf("publish: %w", err)
		}
	}
	if err := w.flush(ctx); err != nil {
		return res, fmt.Errorf("flush: %w", err)
	}
	res.acking = time.Since(start)
	if a, err := w.acked(); err != nil || a != n {
		return res, fmt.Errorf("%d of %d writes acknowledged (%v)", a, n, err)
	}
	last, err := waitAll(cs, so.scheme.target(counters), p.drain)
	if err != nil {
		return res, err
	}
	res.elapsed = max(last.Sub(start), res.acking)
	res.writes = n
	for _, c := range cs {
		res.updates += c.updates.Load()
	}
	return res, nil
}

// pipelined: one pipelined writer, 4 streams watching 1,000 keys: the
// write stream (the Go client's Writer) and SetVariables with one call in
// flight against NATS KV async publish.
func (h *harness) pipelined(ctx context.Context) {
	p := pipelinedRun{streams: h.sz.deliveryStream, keys: 10 * h.sz.keys, duration: h.sz.duration, drain: h.sz.drainTimeout}
	p.window = int64(p.keys) * 32 // as delivery's (sizesFor): inside NATS KV's history of 64 per key
	if h.o.Size == "tiny" {
		p.window = int64(p.keys) * 8
	}
	variant := fmt.Sprintf("1 writer, %dS, %d keys", p.streams, p.keys)
	run := func(r Row, sys asyncSystem) Row { return pipelinedRow(ctx, r, p, sys) }
	for _, m := range []struct {
		api  string
		kind vwAsync
	}{
		{"WriteVariables, Go client Writer", vwAsyncStream},
		{"SetVariables, one call in flight", vwAsyncSetMany},
	} {
		r := Row{Scenario: "pipelined", Variant: variant, API: m.api, System: "varwatch", Unit: "events/s", higherBetter: true}
		sys, err := newVarwatch(h.o.Server, vwMode{mux: true, view: pb.View_VIEW_VALUE}, nil, 1)
		if err != nil {
			h.add(failRow(r, err))
			continue
		}
		r = run(r, &vwAsyncSystem{vwSystem: sys, kind: m.kind})
		sys.close()
		h.add(r)
	}
	for _, peer := range h.peers {
		sys, err := peer.system(ctx, 1)
		if err != nil {
			h.add(failRow(Row{Scenario: "pipelined", Variant: variant, System: peer.name()}, err))
			continue
		}
		if as, ok := sys.(asyncSystem); ok { // etcd has no pipelined writer here
			r := Row{Scenario: "pipelined", Variant: variant, System: peer.name(), Unit: "events/s", higherBetter: true,
				Note: "async publishes, at most 4,096 in flight"}
			h.add(run(r, as))
		}
		sys.close()
	}
	ackRatios(h.rep.Rows, "pipelined")
}

// pipelinedRow runs p on sys and fills r: events/s delivered until the
// last stream had everything, acked writes/s until the last ack.
func pipelinedRow(ctx context.Context, r Row, p pipelinedRun, sys asyncSystem) Row {
	m := startMeter()
	res, err := p.run(ctx, sys)
	if err != nil {
		return failRow(r, err)
	}
	m.stop(&r, res.updates)
	r.WritesPerSec, r.Delivered = float64(res.writes)/res.acking.Seconds(), res.updates
	r.Value = float64(res.updates) / res.elapsed.Seconds()
	return r
}

// ackRatios notes, on the varwatch rows of scenario, their acked writes/s
// as a multiple of each peer's in the same run.
func ackRatios(rows []Row, scenario string) {
	for i := range rows {
		r := &rows[i]
		if r.Scenario != scenario || r.System != "varwatch" || r.Status != "ok" {
			continue
		}
		for _, p := range rows {
			if p.Scenario == scenario && p.System != "varwatch" && p.Status == "ok" && p.WritesPerSec > 0 {
				r.Note = joinNote(r.Note, fmt.Sprintf("acked writes/s %.2fx %s", r.WritesPerSec/p.WritesPerSec, p.System))
			}
		}
	}
}

func joinNote(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// vwAsync is how varwatch pipelines.
type vwAsync int

const (
	// vwAsyncStream: client.Writer over WriteVariables, small acks.
	vwAsyncStream vwAsync = iota
	// vwAsyncSetMany: one SetVariables call in flight carrying whatever
	// was published meanwhile (what a producer does without the stream).
	vwAsyncSetMany
)

type vwAsyncSystem struct {
	*vwSystem
	kind vwAsync
}

func (v *vwAsyncSystem) newAsyncWriter(ctx context.Context) (asyncWriter, error) {
	c, err := client.New(v.addr)
	if err != nil {
		return nil, err
	}
	if v.kind == vwAsyncSetMany {
		w := &vwSetManyWriter{v: v.vwSystem, c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
		go w.run()
		return w, nil
	}
	w, err := c.Writer(ctx, v.session, client.WriterOptions{})
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return &vwStreamWriter{v: v.vwSystem, c: c, w: w}, nil
}

type vwStreamWriter struct {
	v       *vwSystem
	c       *client.Client
	w       *client.Writer
	pending []*client.Pending // published, not yet counted as acked
	done    int64
}

func (w *vwStreamWriter) publish(kv kv) error {
	w.pending = append(w.pending, w.w.Set(w.v.names[kv.key], &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: float64(kv.val)}}))
	return nil
}

func (w *vwStreamWriter) acked() (int64, error) {
	i := 0
	for ; i < len(w.pending); i++ {
		p := w.pending[i]
		select {
		case <-p.Done():
		default:
			w.pending = w.pending[i:]
			return w.done, nil
		}
		if _, err := p.Wait(context.Background()); err != nil {
			return w.done, err
		}
		w.done++
	}
	w.pending = w.pending[:0]
	return w.done, nil
}

func (w *vwStreamWriter) flush(ctx context.Context) error { return w.w.Flush(ctx) }

func (w *vwStreamWriter) close() {
	_ = w.w.Close()
	_ = w.c.Close()
}

// vwSetManyWriter sends, one call at a time, every write published since
// the last call.
type vwSetManyWriter struct {
	v    *vwSystem
	c    *client.Client
	wake chan struct{}
	done chan struct{}

	mu       sync.Mutex
	queued   []*pb.SetVariableRequest
	closed   bool
	err      error
	ackCount atomic.Int64
}

func (w *vwSetManyWriter) publish(kv kv) error {
	req := &pb.SetVariableRequest{VariableIdentifier: w.v.names[kv.key], Value: &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: float64(kv.val)}}}
	w.mu.Lock()
	w.queued = append(w.queued, req)
	err := w.err
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return err
}

func (w *vwSetManyWriter) run() {
	defer close(w.done)
	for range w.wake {
		for {
			w.mu.Lock()
			batch := w.queued
			if len(batch) > 4000 { // answers hold whole variables: within 4 MiB
				batch = batch[:4000]
			}
			w.queued = w.queued[len(batch):]
			closed := w.closed
			w.mu.Unlock()
			if len(batch) == 0 {
				if closed {
					return
				}
				break
			}
			res, err := w.c.SetVariables(context.Background(), &pb.SetVariablesRequest{SessionId: w.v.session, Updates: batch})
			if err == nil {
				for _, r := range res.GetResults() {
					if !r.GetSuccess() {
						err = fmt.Errorf("set %s: %s", r.GetVariableIdentifier(), r.GetError())
						break
					}
				}
			}
			if err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			w.ackCount.Add(int64(len(batch)))
		}
	}
}

func (w *vwSetManyWriter) acked() (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ackCount.Load(), w.err
}

func (w *vwSetManyWriter) flush(ctx context.Context) error {
	for {
		w.mu.Lock()
		empty, err := len(w.queued) == 0, w.err
		w.mu.Unlock()
		if err != nil {
			return err
		}
		if empty {
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	w.stop()
	select {
	case <-w.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	_, err := w.acked()
	return err
}

// stop tells the sender no more writes come, and wakes it.
func (w *vwSetManyWriter) stop() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *vwSetManyWriter) close() {
	w.stop()
	close(w.wake)
	<-w.done
	_ = w.c.Close()
}

// natsAsyncWriter publishes to the bucket's subjects asynchronously, at
// most 4,096 in flight, and counts the acks in order.
type natsAsyncWriter struct {
	s       *natsSystem
	c       *natsConn
	futures []jetstream.PubAckFuture
	done    int64
}

func (s *natsSystem) newAsyncWriter(context.Context) (asyncWriter, error) {
	c, err := s.p.connectWith(jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	return &natsAsyncWriter{s: s, c: c}, nil
}

func (w *natsAsyncWriter) publish(kv kv) error {
	for {
		f, err := w.c.js.PublishAsync("$KV."+w.s.bucket+"."+w.s.keys[kv.key], strconv.AppendInt(nil, kv.val, 10))
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			// At the in-flight bound for longer than the stall wait:
			// wait for the oldest ack, then try again.
			if err := w.waitOldest(context.Background()); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		w.futures = append(w.futures, f)
		return nil
	}
}

func (w *natsAsyncWriter) waitOldest(ctx context.Context) error {
	if len(w.futures) == 0 {
		return nil
	}
	select {
	case <-w.futures[0].Ok():
	case err := <-w.futures[0].Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	w.futures = w.futures[1:]
	w.done++
	return nil
}

func (w *natsAsyncWriter) acked() (int64, error) {
	for len(w.futures) > 0 {
		select {
		case <-w.futures[0].Ok():
		case err := <-w.futures[0].Err():
			return w.done, err
		default:
			return w.done, nil
		}
		w.futures = w.futures[1:]
		w.done++
	}
	return w.done, nil
}

func (w *natsAsyncWriter) flush(ctx context.Context) error {
	for len(w.futures) > 0 {
		if err := w.waitOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (w *natsAsyncWriter) close() { w.c.nc.Close() }
