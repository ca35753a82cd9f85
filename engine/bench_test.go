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
