package bench

import (
	"math/bits"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// cpuTime is the process's user plus system CPU time (getrusage).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// meter measures what a row costs the whole process: CPU time (every
// goroutine: clients, servers, embedded peers) and heap allocations.
type meter struct {
	start   time.Time
	cpu     time.Duration
	mallocs uint64
}

func startMeter() meter {
	return meter{start: time.Now(), cpu: cpuTime(), mallocs: mallocs()}
}

// stop fills the row's CPU seconds and, when delivered > 0, allocations
// per delivered update.
func (m meter) stop(r *Row, delivered int64) {
	r.CPUSeconds = (cpuTime() - m.cpu).Seconds()
	if delivered > 0 {
		r.AllocsPerUpdate = float64(mallocs()-m.mallocs) / float64(delivered)
	}
}

// rssBytes is the process's resident set size (VmRSS), 0 if unknown.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// hist is a log-bucketed latency histogram in nanoseconds, safe for
// concurrent Record: values below 128 have their own bucket, above that
// each power of two is split into 64 buckets (under 1.6% error), which is
// all HdrHistogram would add at the precision a loaded 2-core machine
// deserves.
type hist struct {
	counts [128 + 57*64]atomic.Int64
	n      atomic.Int64
	max    atomic.Int64
}

func histIndex(v int64) int {
	if v < 128 {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - 7 // v>>e is in [64, 128)
	return 128 + (e-1)*64 + int(v>>e) - 64
}

// histUpper is the largest value of bucket i.
func histUpper(i int) int64 {
	if i < 128 {
		return int64(i)
	}
	e := (i-128)/64 + 1
	sub := int64((i-128)%64 + 64)
	return (sub+1)<<e - 1
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	h.counts[histIndex(v)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// quantile returns the value at q (0..1): the upper bound of the bucket
// holding it, or the exact maximum for the last one.
func (h *hist) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	want := int64(q*float64(n) + 0.5)
	want = min(max(want, 1), n)
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= want {
			return time.Duration(min(histUpper(i), h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// memUse is the process's live heap (as of the last GC) and goroutine
// stack memory, read through runtime/metrics, which does not stop the
// world: sampling it under load does not disturb the row.
type memUse struct{ heap, stack int64 }

func readMem() memUse {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	var m memUse
	if s[0].Value.Kind() == metrics.KindUint64 {
		m.heap = int64(s[0].Value.Uint64())
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		m.stack = int64(s[1].Value.Uint64())
	}
	return m
}

// memBaseline is readMem right after a GC: what the process holds before
// a row's streams open.
func memBaseline() memUse {
	runtime.GC()
	return readMem()
}

// memPeak samples readMem every interval until stop is called and returns
// the largest growth over base (heap plus stacks) it saw, as the memory
// scenario counts it.
func memPeak(base memUse, interval time.Duration) (stop func() memUse) {
	done := make(chan struct{})
	res := make(chan memUse, 1)
	go func() {
		var peak memUse
		t := time.NewTicker(interval)
		defer t.Stop()
		sample := func() {
			m := readMem()
			g := memUse{m.heap - base.heap, m.stack - base.stack}
			if g.heap+g.stack > peak.heap+peak.stack {
				peak = g
			}
		}
		for {
			select {
			case <-t.C:
				sample()
			case <-done:
				sample()
				res <- peak
				return
			}
		}
	}()
	return func() memUse { close(done); return <-res }
}

func (m memUse) perStream(n int) float64 { return float64(m.heap+m.stack) / float64(n) }
