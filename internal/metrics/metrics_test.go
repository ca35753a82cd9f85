package metrics

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
)

// TestRegistryIsConsistent gathers every family through a pedantic
// registry, which fails on a sample its collector did not describe, a
// duplicate series or a malformed histogram.
func TestRegistryIsConsistent(t *testing.T) {
	eng := engine.New(engine.Config{})
	t.Cleanup(func() { _ = eng.Close() })
	api := grpcapi.New(grpcapi.Config{Backend: eng})
	if _, _, err := eng.CreateSession(context.Background(), engine.CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}

	r := prometheus.NewPedanticRegistry()
	r.MustRegister(newCollector(eng, api, nil), buildInfo(BuildInfo{Version: "v1.2.3", Revision: "abc", GoVersion: "go1.26"}))
	r.MustRegister(api.Collectors()...)
	fams, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]bool{}
	for _, f := range fams {
		byName[f.GetName()] = true
	}
	for _, name := range []string{"varwatch_sessions", "varwatch_engine_batch_size", "varwatch_build_info",
		"varwatch_set_latency_seconds", "varwatch_delivery_lag_seconds", "varwatch_watch_batch_size"} {
		if !byName[name] {
			t.Errorf("no %s among %v", name, byName)
		}
	}
	// The whole registry, with the Go and process collectors, registers.
	_ = NewRegistry(Sources{Engine: eng, API: api})
}

// TestBatchHistogramIsCumulative: the engine counts per bucket,
// Prometheus wants every bucket to count what is at or below its bound.
func TestBatchHistogramIsCumulative(t *testing.T) {
	desc := prometheus.NewDesc("h", "h", nil, nil)
	m := batchHistogram(desc, engine.Histogram{Bounds: []float64{1, 2, 4}, Counts: []uint64{3, 0, 2, 5}, Sum: 60})
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	h := pb.GetHistogram()
	var got []uint64
	for _, b := range h.GetBucket() {
		got = append(got, b.GetCumulativeCount())
	}
	if h.GetSampleCount() != 10 || h.GetSampleSum() != 60 || len(got) != 3 || got[0] != 3 || got[1] != 3 || got[2] != 5 {
		t.Fatalf("count %d sum %v buckets %v; want 10, 60, [3 3 5]", h.GetSampleCount(), h.GetSampleSum(), got)
	}
}
