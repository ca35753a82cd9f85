package engine

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkPipelinedSets compares, in one run, one writer making
// single-variable sets with the blocking Set (one command, one wake-up
// each) and with SetBatches (one batch of one set per write, handed over
// in calls of `per` writes, or one batch of 1000 sets per call, the shape
// of a write stream's request): the ratio is what pipelining buys. Sets
// cycle over 64 variables, with no watcher and with one watcher of the
// whole session drained flat out, so that every set is published.
//
//	go test -run '^$' -bench PipelinedSets -benchtime 2s ./engine
func BenchmarkPipelinedSets(b *testing.B) {
	for _, watchers := range []int{0, 1} {
		b.Run(fmt.Sprintf("watchers=%d", watchers), func(b *testing.B) { benchPipelined(b, watchers) })
	}
}

func benchPipelined(b *testing.B, watchers int) {
	setup := func(b *testing.B) (*Engine, func()) {
		ctx := context.Background()
		e := New(Config{SubscriptionBytes: -1})
		if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "b"}); err != nil {
			b.Fatal(err)
		}
		for i := range 64 {
			if _, err := e.Register(ctx, RegisterRequest{Session: "b", Name: fmt.Sprintf("v%d", i), Type: TypeInteger, Value: Integer(0)}); err != nil {
				b.Fatal(err)
			}
		}
		if watchers == 0 {
			return e, func() { e.Close() }
		}
		sub, _ := e.Watch(ctx, WatchRequest{Session: "b", Buffer: 1 << 30})
		go func() {
			var evs []Event
			for {
				var err error
				if evs, err = sub.Drain(evs); err != nil {
					return
				}
				<-sub.Ready()
			}
		}()
		return e, func() { sub.Close(); e.Close() }
	}
	names := make([]string, 64)
	for i := range names {
		names[i] = fmt.Sprintf("v%d", i)
	}
	var blocking float64
	b.Run("blocking-Set", func(b *testing.B) {
		e, stop := setup(b)
		defer stop()
		ctx := context.Background()
		start := time.Now()
		for i := 0; b.Loop(); i++ {
			if _, err := e.Set(ctx, SetRequest{Session: "b", Variable: names[i%64], Value: Integer(int64(i))}); err != nil {
				b.Fatal(err)
			}
		}
		blocking = float64(b.N) / time.Since(start).Seconds()
		b.ReportMetric(blocking, "sets/s")
	})
	for _, per := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("SetBatches/per-call=%d", per), func(b *testing.B) {
			e, stop := setup(b)
			defer stop()
			ctx := context.Background()
			batches := make([]SetManyRequest, per)
			for i := range batches {
				batches[i] = SetManyRequest{Session: "b", Sets: make([]SetRequest, 1)}
			}
			start := time.Now()
			n := 0
			for b.Loop() {
				for i := range batches {
					batches[i].Sets[0] = SetRequest{Variable: names[n%64], Value: Integer(int64(n))}
					n++
				}
				for _, r := range e.SetBatches(ctx, batches) {
					if r.Err != nil || r.Items[0].Err != nil {
						b.Fatal(r.Err, r.Items)
					}
				}
			}
			rate := float64(n) / time.Since(start).Seconds()
			b.ReportMetric(rate, "sets/s")
			if blocking > 0 {
				b.ReportMetric(rate/blocking, "x-blocking")
			}
		})
	}
	b.Run("SetBatches/one-batch-of=1000", func(b *testing.B) {
		e, stop := setup(b)
		defer stop()
		ctx := context.Background()
		batch := []SetManyRequest{{Session: "b", Sets: make([]SetRequest, 1000)}}
		start := time.Now()
		n := 0
		for b.Loop() {
			for i := range batch[0].Sets {
				batch[0].Sets[i] = SetRequest{Variable: names[n%64], Value: Integer(int64(n))}
				n++
			}
			if r := e.SetBatches(ctx, batch)[0]; r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		rate := float64(n) / time.Since(start).Seconds()
		b.ReportMetric(rate, "sets/s")
		if blocking > 0 {
			b.ReportMetric(rate/blocking, "x-blocking")
		}
	})
}
