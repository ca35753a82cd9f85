package engine

import (
	"fmt"
	"testing"
	"time"
)

// benchState is a loop state with session "b" holding 100 float variables
// v0..v99, for benchmarks that drive the state directly, on the calling
// goroutine, without the command channel.
func benchState(b *testing.B) (*state, time.Time) {
	b.Helper()
	st := newState(Config{}.withDefaults())
	now := time.Now()
	if _, _, err := st.createSession(CreateSessionRequest{ID: "b"}, now); err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		req := RegisterRequest{Session: "b", Name: fmt.Sprintf("v%d", i), Type: TypeFloat, Value: Float(0)}
		if _, _, err := st.register(req, checkRegistration(req, &benchCfg), nil, now); err != nil {
			b.Fatal(err)
		}
	}
	st.publish()
	return st, now
}

// BenchmarkLoopApply measures what one loop cycle spends applying sets and
// publishing them, without the channel hop and the caller's wake-up that
// BenchmarkSet includes: one command of n non-atomic sets (each its own
// revision, with history), no subscribers.
//
//	go test -run '^$' -bench LoopApply -benchmem ./engine
func BenchmarkLoopApply(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("sets-per-command=%d", n), func(b *testing.B) {
			st, now := benchState(b)
			sets := make([]SetRequest, n)
			for i := range sets {
				sets[i].Variable = fmt.Sprintf("v%d", i)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				for j := range sets {
					sets[j].Value = Float(float64(i))
				}
				if _, _, err := st.setMany(SetManyRequest{Session: "b", Sets: sets}, prechecked(sets), now); err != nil {
					b.Fatal(err)
				}
				st.publish()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/set")
		})
	}
}

// BenchmarkFanoutPublish measures one set reaching N subscribers of the
// whole session: staging, publishing into each subscription and each
// subscriber's Drain, all on one goroutine (no scheduling noise);
// loop-ns/delivery is the loop's part alone (apply, stage, publish).
//
//	go test -run '^$' -bench FanoutPublish -benchmem ./engine
func BenchmarkFanoutPublish(b *testing.B) {
	for _, subs := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			st, now := benchState(b)
			e := &Engine{cfg: st.cfg} // a subscription needs its engine only to unsubscribe
			all := make([]*Subscription, subs)
			spares := make([][]Event, subs)
			names, err := st.names("b", false, 0, now)
			if err != nil {
				b.Fatal(err)
			}
			pre := matchNames(Glob{pattern: "*"}, names)
			for i := range all {
				sub, err := st.watch(e, WatchRequest{Session: "b", Pattern: "*"}, pre, now)
				if err != nil {
					b.Fatal(err)
				}
				all[i] = sub
			}
			st.publish()
			set := []SetRequest{{Variable: "v1"}}
			var loop time.Duration // the loop's part: applying and publishing
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				set[0].Value = Float(float64(i))
				start := time.Now()
				if _, _, err := st.setMany(SetManyRequest{Session: "b", Sets: set}, prechecked(set), now); err != nil {
					b.Fatal(err)
				}
				st.publish()
				loop += time.Since(start)
				for j, sub := range all {
					evs, err := sub.Drain(spares[j])
					if err != nil || len(evs) != 1 {
						b.Fatalf("subscriber %d drained %d events, %v", j, len(evs), err)
					}
					spares[j] = evs
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
			b.ReportMetric(float64(loop.Nanoseconds())/float64(b.N*subs), "loop-ns/delivery")
		})
	}
}

// prechecked is precheck's verdicts for sets without metadata.
func prechecked(sets []SetRequest) prechecks {
	cfg := Config{}.withDefaults()
	_, pre := precheck(&cfg, sets)
	return pre
}

var benchCfg = Config{}.withDefaults()
