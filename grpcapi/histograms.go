package grpcapi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/varwatch/varwatch/engine"
)

// The server's distributions: how long a write waits for its answer, how
// long a change takes to reach a watch stream, how many updates go out per
// message. They are Prometheus histograms observed where the thing
// happens: Observe is a few atomic adds, lock-free, so the RPC handlers and
// the stream senders call it inline. None of it runs on the engine loop.

// Set RPCs, the values of varwatch_set_latency_seconds's rpc label.
const (
	rpcSetVariable  = "SetVariable"
	rpcSetVariables = "SetVariables"
)

// Stream kinds with batches, the values of varwatch_watch_batch_size's
// stream label: WatchVariablesBatched messages and the multiplexed Watch
// stream's responses (a WatchVariables message is always one update).
const (
	streamBatched = "batched"
	streamMux     = "mux"
)

var (
	// setLatencyBuckets run from 25µs to about 0.8s: an in-memory set
	// answers in tens of microseconds, a durable one waits for fsync, and
	// a full engine queue makes callers wait longer.
	setLatencyBuckets = prometheus.ExponentialBuckets(25e-6, 2, 16)
	// deliveryLagBuckets run from 50µs to about 1.6s, and a resume that
	// replays old history lands in +Inf.
	deliveryLagBuckets = prometheus.ExponentialBuckets(50e-6, 2, 16)
	// watchBatchBuckets are powers of two up to 4096, past the default
	// max_batch_size (1000).
	watchBatchBuckets = prometheus.ExponentialBuckets(1, 2, 13)
)

// histograms are the server's histograms. Set once by New; the
// histograms themselves are safe for concurrent use.
type histograms struct {
	setLatency  *prometheus.HistogramVec
	deliveryLag prometheus.Histogram
	watchBatch  *prometheus.HistogramVec

	// The label values resolved once, so an observation is no map lookup.
	setOne, setMany       prometheus.Observer
	batchBatched, muxResp prometheus.Observer
}

func newHistograms() *histograms {
	h := &histograms{
		setLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "varwatch_set_latency_seconds",
			Help:    "Time from a set RPC's arrival at its handler to its answer (the engine's queue, apply and, with --data-dir, fsync included), by RPC.",
			Buckets: setLatencyBuckets,
		}, []string{"rpc"}),
		deliveryLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "varwatch_delivery_lag_seconds",
			Help:    "Time from a value change applied by the engine to its update handed to a watch stream's send (a replay on resume counts its age).",
			Buckets: deliveryLagBuckets,
		}),
		watchBatch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "varwatch_watch_batch_size",
			Help:    "Updates per message sent on a watch stream, by stream kind (batched: WatchVariablesBatched; mux: the multiplexed Watch's responses).",
			Buckets: watchBatchBuckets,
		}, []string{"stream"}),
	}
	h.setOne = h.setLatency.WithLabelValues(rpcSetVariable)
	h.setMany = h.setLatency.WithLabelValues(rpcSetVariables)
	h.batchBatched = h.watchBatch.WithLabelValues(streamBatched)
	h.muxResp = h.watchBatch.WithLabelValues(streamMux)
	return h
}

// Collectors returns the server's histograms, to register with a
// Prometheus registry (README.md, "Metrics").
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.hist.setLatency, s.hist.deliveryLag, s.hist.watchBatch}
}

// since observes the time from start on o.
func since(o prometheus.Observer, start time.Time) { o.Observe(time.Since(start).Seconds()) }

// lag observes the delivery lag of the value changes among evs, which
// were just handed to a stream's send.
func (h *histograms) lag(evs []engine.Event) {
	var now time.Time
	for i := range evs {
		if evs[i].Type != engine.EventValueChange || evs[i].Time.IsZero() {
			continue
		}
		if now.IsZero() {
			now = time.Now()
		}
		h.deliveryLag.Observe(max(now.Sub(evs[i].Time), 0).Seconds())
	}
}
