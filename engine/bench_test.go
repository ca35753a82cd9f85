package engine

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkSet measures single-variable sets through the loop, one writer
// and many (b.RunParallel), with and without a watcher of every variable.
func BenchmarkSet(b *testing.B) {
	for _, watchers := range []int{0, 1} {
		for _, parallel := range []bool{false, true} {
			name := fmt.Sprintf("watchers=%d/parallel=%v", watchers, parallel)
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				e := New(Config{})
				defer e.Close()
				if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "b"}); err != nil {
					b.Fatal(err)
				}
				const vars = 64
				for i := range vars {
					if _, err := e.Register(ctx, RegisterRequest{Session: "b", Name: fmt.Sprintf("v%d", i), Type: TypeInteger, Value: Integer(0)}); err != nil {
						b.Fatal(err)
					}
				}
				for range watchers {
					sub, _ := e.Watch(ctx, WatchRequest{Session: "b", Buffer: 1 << 30})
					go func() { // drain as fast as possible
						var evs []Event
						for {
							var err error
							if evs, err = sub.Drain(evs); err != nil {
								return
							}
							<-sub.Ready()
						}
					}()
					defer sub.Close()
				}
				b.ReportAllocs()
				if !parallel {
					for i := 0; b.Loop(); i++ {
						if _, err := e.Set(ctx, SetRequest{Session: "b", Variable: "v1", Value: Integer(int64(i))}); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for i := int64(0); pb.Next(); i++ {
						if _, err := e.Set(ctx, SetRequest{Session: "b", Variable: "v1", Value: Integer(i)}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkCloseWatches measures closing every one of n subscriptions
// that watch the same 100 variables, per subscription. Constant per
// subscription as n grows (subList); it grew with n when unregistering
// searched every watcher list.
//
//	go test -run '^$' -bench CloseWatches ./engine
func BenchmarkCloseWatches(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("subscriptions=%d", n), func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				e := New(Config{})
				if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
					b.Fatal(err)
				}
				for i := range 100 {
					if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: fmt.Sprintf("v%d", i), Type: TypeFloat, Value: Float(0)}); err != nil {
						b.Fatal(err)
					}
				}
				subs := make([]*Subscription, n)
				for i := range subs {
					sub, err := e.Watch(ctx, WatchRequest{Session: "s", Pattern: "*"})
					if err != nil {
						b.Fatal(err)
					}
					subs[i] = sub
				}
				b.StartTimer()
				for _, sub := range subs {
					sub.Close()
				}
				// A write is a loop round trip after every close.
				if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "v0", Value: Float(1)}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				e.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/close")
		})
	}
}
