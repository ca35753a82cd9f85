package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/varwatch/varwatch/engine"
)

// BenchmarkCluster compares, in one run, one in-memory engine with three
// nodes over a 3-server JetStream cluster (replicas 3, file storage) on
// this machine: the throughput of 16 concurrent writers (spread over the
// nodes) and the p99 set-to-watcher latency, with the watchers on other
// nodes than the writer. Run it alone:
//
//	go test ./cluster -run '^$' -bench Cluster -benchtime 1x
func BenchmarkCluster(b *testing.B) {
	single := engine.New(engine.Config{})
	b.Cleanup(func() { single.Close() })
	_, nodes := startNodes(b, 3)
	clustered := make([]*engine.Engine, len(nodes))
	for i, n := range nodes {
		clustered[i] = n.e
	}
	for range b.N {
		one := writeThroughput(b, []*engine.Engine{single}, "w1")
		three := writeThroughput(b, clustered, "w3")
		p99one := setToWatcher(b, single, single, "l1")
		p99three := setToWatcher(b, clustered[0], clustered[1], "l3")
		b.ReportMetric(one, "sets/s-1node")
		b.ReportMetric(three, "sets/s-3nodes")
		b.ReportMetric(three/one, "throughput-ratio")
		b.ReportMetric(float64(p99one.Microseconds()), "p99-us-1node")
		b.ReportMetric(float64(p99three.Microseconds()), "p99-us-3nodes")
		fanOne := fanOut(b, single, []*engine.Engine{single}, "f1")
		fanThree := fanOut(b, clustered[0], clustered, "f3")
		b.ReportMetric(fanOne, "deliveries/s-1node")
		b.ReportMetric(fanThree, "deliveries/s-3nodes")
	}
}

// fanOut sets a variable on writer while 300 watchers, spread over
// watchers' engines, watch it, and returns the updates delivered per
// second, from the first set until every watcher has the last.
func fanOut(b *testing.B, writer *engine.Engine, engines []*engine.Engine, session string) float64 {
	const watchers, sets = 300, 200
	ctx := context.Background()
	setup(b, writer, session, 1)
	var subs []*engine.Subscription
	for i := range watchers {
		e := engines[i%len(engines)]
		if err := e.WaitApplied(ctx, writer.Applied()); err != nil {
			b.Fatal(err)
		}
		sub, err := e.Watch(ctx, engine.WatchRequest{Session: session})
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
		subs = append(subs, sub)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, sub := range subs {
		wg.Go(func() {
			for n := 0; n < sets; {
				ev, err := sub.Next(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				if ev.Type == engine.EventValueChange {
					n++
				}
			}
		})
	}
	var batch []engine.SetManyRequest
	for i := range sets {
		batch = append(batch, engine.SetManyRequest{Session: session, Atomic: true,
			Sets: []engine.SetRequest{{Variable: "v0", Value: engine.Integer(int64(i))}}})
	}
	for _, r := range writer.SetBatches(ctx, batch) {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	wg.Wait()
	return float64(watchers*sets) / time.Since(start).Seconds()
}

// writeThroughput runs 16 writers, each on engines[i%len], and returns
// the sets per second.
func writeThroughput(b *testing.B, engines []*engine.Engine, session string) float64 {
	const writers, perWriter = 16, 300
	ctx := context.Background()
	setup(b, engines[0], session, writers)
	for _, e := range engines {
		if err := e.WaitApplied(ctx, engines[0].Applied()); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		e := engines[w%len(engines)]
		wg.Go(func() {
			for i := range perWriter {
				if _, err := e.Set(ctx, engine.SetRequest{Session: session, Variable: fmt.Sprint("v", w), Value: engine.Integer(int64(i))}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(writers*perWriter) / time.Since(start).Seconds()
}

// setToWatcher sets a variable on writer, one set at a time, and returns
// the p99 of the time until a watch on watcher has it.
func setToWatcher(b *testing.B, writer, watcher *engine.Engine, session string) time.Duration {
	const sets = 300
	ctx := context.Background()
	setup(b, writer, session, 1)
	if err := watcher.WaitApplied(ctx, writer.Applied()); err != nil {
		b.Fatal(err)
	}
	sub, err := watcher.Watch(ctx, engine.WatchRequest{Session: session})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	var lat []time.Duration
	for i := range sets {
		start := time.Now()
		if _, err := writer.Set(ctx, engine.SetRequest{Session: session, Variable: "v0", Value: engine.Integer(int64(i))}); err != nil {
			b.Fatal(err)
		}
		for {
			ev, err := sub.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if ev.Type == engine.EventValueChange {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}

func setup(b *testing.B, e *engine.Engine, session string, vars int) {
	ctx := context.Background()
	if _, _, err := e.CreateSession(ctx, engine.CreateSessionRequest{ID: session}); err != nil {
		b.Fatal(err)
	}
	for i := range vars {
		if _, err := e.Register(ctx, engine.RegisterRequest{Session: session, Name: fmt.Sprint("v", i), Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
			b.Fatal(err)
		}
	}
}
