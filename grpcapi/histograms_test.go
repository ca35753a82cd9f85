package grpcapi

import (
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/varwatch/varwatch/engine"
)

func histogramOf(t testing.TB, h interface{ Write(*dto.Metric) error }) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram()
}

// TestLagObservesValueChangesOnly: the delivery lag counts each value
// change once, from its engine time; initial values, heartbeats and a
// change without a time are not changes that were waited for, and a clock
// step back counts as no lag rather than a negative one.
func TestLagObservesValueChangesOnly(t *testing.T) {
	h := newHistograms()
	now := time.Now()
	h.lag([]engine.Event{
		{Type: engine.EventInitialValue, Time: now.Add(-time.Hour)},
		{Type: engine.EventValueChange, Time: now.Add(-2 * time.Second)},
		{Type: engine.EventHeartbeat, Time: now.Add(-time.Hour)},
		{Type: engine.EventValueChange},                           // no time
		{Type: engine.EventValueChange, Time: now.Add(time.Hour)}, // ahead: 0
	})
	got := histogramOf(t, h.deliveryLag)
	if got.GetSampleCount() != 2 || got.GetSampleSum() < 2 || got.GetSampleSum() > 3 {
		t.Fatalf("count %d sum %v; want 2 observations summing to about 2s", got.GetSampleCount(), got.GetSampleSum())
	}
}

// BenchmarkDeliveryAccounting compares what the sender pays per drained
// batch for the counters it always had (serverStats.sent) with the same
// plus the delivery lag histogram, from all CPUs at once (every stream
// shares the histogram):
//
//	go test -run XXX -bench DeliveryAccounting ./grpcapi
func BenchmarkDeliveryAccounting(b *testing.B) {
	for _, n := range []int{1, 64} {
		evs := make([]engine.Event, n)
		for i := range evs {
			evs[i] = engine.Event{Type: engine.EventValueChange, Revision: int64(i + 1), Time: time.Now()}
		}
		for _, withLag := range []bool{false, true} {
			b.Run(fmt.Sprintf("batch=%d/lag=%v", n, withLag), func(b *testing.B) {
				var st serverStats
				h := newHistograms()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						st.sent(evs)
						if withLag {
							h.lag(evs)
						}
					}
				})
			})
		}
	}
}
