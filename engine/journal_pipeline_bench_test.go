//go:build linux

package engine

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// syscallJournal stands in for a disk whose fsync takes exactly d: its
// Append sleeps in a raw system call, which, like fsync, keeps its P
// while it blocks (time.Sleep would park the goroutine and give it up).
type syscallJournal struct {
	memJournal
	d       time.Duration
	appends atomic.Int64
}

func (j *syscallJournal) Append(records [][]byte) (bool, error) {
	ts := syscall.NsecToTimespec(int64(j.d))
	syscall.Nanosleep(&ts, nil)
	j.appends.Add(1)
	return false, nil
}

// BenchmarkSyncerYields measures what the syncer's yield after answering
// a group of commands buys: 16 writers, each setting its own variable and
// waiting for its reply, on a durable engine whose "fsync" takes a fixed
// 250 µs, so that the disk's noise is out of the comparison. Rounds of a
// second alternate between the syncer yielding and not.
//
//	go test -run '^$' -bench SyncerYields -benchtime 1x ./engine
func BenchmarkSyncerYields(b *testing.B) {
	const writers, rounds = 16, 6
	run := func(yield bool) (sets, appends int64) {
		syncerYields = yield
		defer func() { syncerYields = true }()
		j := &syscallJournal{d: 250 * time.Microsecond}
		e, err := Open(Config{Journal: j})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		ctx := context.Background()
		if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "b"}); err != nil {
			b.Fatal(err)
		}
		for w := range writers {
			if _, err := e.Register(ctx, RegisterRequest{Session: "b", Name: fmt.Sprintf("v%d", w), Type: TypeInteger, Value: Integer(0)}); err != nil {
				b.Fatal(err)
			}
		}
		var n atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(time.Second)
		a0 := j.appends.Load()
		for w := range writers {
			wg.Go(func() {
				name := fmt.Sprintf("v%d", w)
				for i := int64(0); time.Now().Before(deadline); i++ {
					if _, err := e.Set(ctx, SetRequest{Session: "b", Variable: name, Value: Integer(i)}); err != nil {
						b.Error(err)
						return
					}
					n.Add(1)
				}
			})
		}
		wg.Wait()
		return n.Load(), j.appends.Load() - a0
	}
	for b.Loop() {
		var with, without, withAppends, withoutAppends int64
		for r := range rounds {
			for _, yield := range []bool{r%2 == 0, r%2 != 0} {
				sets, appends := run(yield)
				if yield {
					with, withAppends = with+sets, withAppends+appends
				} else {
					without, withoutAppends = without+sets, withoutAppends+appends
				}
			}
		}
		b.ReportMetric(float64(with)/rounds, "yield-sets/s")
		b.ReportMetric(float64(without)/rounds, "no-yield-sets/s")
		b.ReportMetric(float64(with)/float64(without), "ratio")
		b.ReportMetric(float64(with)/float64(withAppends), "yield-sets/append")
		b.ReportMetric(float64(without)/float64(withoutAppends), "no-yield-sets/append")
	}
}
