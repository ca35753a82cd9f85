package metrics

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/plugins"
)

// statsTimeout bounds how long a scrape waits for the engine's answer.
var statsTimeout = 5 * time.Second

// snapshot is what one scrape reads: engine.Stats (one command through
// the loop), grpcapi.Server.Stats and plugins.Manager.Stats (atomics).
type snapshot struct {
	es engine.Stats
	gs grpcapi.Stats
	ps []plugins.Stats
}

// family is one metric family of the collector: collect emits its
// samples from a snapshot, each with values for the desc's labels.
type family struct {
	desc    *prometheus.Desc
	typ     prometheus.ValueType
	collect func(s *snapshot, emit func(v float64, labels ...string))
}

// collector serves the server's own families. Their values live in the
// engine, the gRPC adapter and the plugin manager already, so nothing is
// counted twice and no hot path sees this type: a scrape takes one
// snapshot and turns it into constant metrics.
//
// # Notes
//
// mu serializes scrapes and guards last, the engine's last answer: while
// the engine is closed (shutting down) or too busy to answer within
// statsTimeout, a scrape shows that answer again.
type collector struct {
	eng *engine.Engine
	api *grpcapi.Server
	mgr *plugins.Manager

	fams       []family
	batchSizes *prometheus.Desc

	mu   sync.Mutex
	last engine.Stats
}

func newCollector(eng *engine.Engine, api *grpcapi.Server, mgr *plugins.Manager) *collector {
	c := &collector{eng: eng, api: api, mgr: mgr}
	f := func(n uint64) float64 { return float64(n) }
	one := func(name, help string, typ prometheus.ValueType, v func(s *snapshot) float64) {
		c.fams = append(c.fams, family{prometheus.NewDesc(name, help, nil, nil), typ,
			func(s *snapshot, emit func(float64, ...string)) { emit(v(s)) }})
	}
	counter := func(name, help string, v func(s *snapshot) float64) { one(name, help, prometheus.CounterValue, v) }
	gauge := func(name, help string, v func(s *snapshot) float64) { one(name, help, prometheus.GaugeValue, v) }
	counters := func(name, help string, labels []string, collect func(s *snapshot, emit func(float64, ...string))) {
		c.fams = append(c.fams, family{prometheus.NewDesc(name, help, labels, nil), prometheus.CounterValue, collect})
	}

	// Engine.
	gauge("varwatch_sessions", "Live sessions.", func(s *snapshot) float64 { return float64(s.es.Sessions) })
	counter("varwatch_sessions_created_total", "Sessions created.", func(s *snapshot) float64 { return f(s.es.SessionsCreated) })
	counter("varwatch_session_expiries_total", "Sessions removed because their TTL ran out.", func(s *snapshot) float64 { return f(s.es.SessionsExpired) })
	counter("varwatch_sessions_closed_total", "Sessions deleted by CleanupSession.", func(s *snapshot) float64 { return f(s.es.SessionsClosed) })
	gauge("varwatch_variables", "Live variables, over all sessions.", func(s *snapshot) float64 { return float64(s.es.Variables) })
	counter("varwatch_sets_total", "Value changes applied (an atomic SetVariables of n counts n).", func(s *snapshot) float64 { return f(s.es.Sets) })
	counter("varwatch_revisions_total", "Revisions made, over all sessions (one per register, set, atomic set or delete).", func(s *snapshot) float64 { return f(s.es.Revisions) })
	gauge("varwatch_history_bytes", "Estimated bytes of every session's resume history.", func(s *snapshot) float64 { return float64(s.es.HistoryBytes) })
	gauge("varwatch_engine_queue_depth", "Commands waiting for the engine loop.", func(s *snapshot) float64 { return float64(s.es.QueueDepth) })
	gauge("varwatch_engine_queue_capacity", "Capacity of the engine's command queue.", func(s *snapshot) float64 { return float64(s.es.QueueCapacity) })
	c.batchSizes = prometheus.NewDesc("varwatch_engine_batch_size", "Commands applied per engine loop cycle.", nil, nil)
	counters("varwatch_limit_rejections_total", "Requests refused by a limit (RESOURCE_EXHAUSTED), by limit.", []string{"limit"},
		func(s *snapshot, emit func(float64, ...string)) {
			// Every limit of either is in its map (their Stats say so), so
			// a new limit shows up here by itself.
			for _, rejections := range []map[string]uint64{s.es.LimitRejections, s.gs.LimitRejections} {
				for _, name := range slices.Sorted(maps.Keys(rejections)) {
					emit(f(rejections[name]), name)
				}
			}
		})

	// Watch streams.
	gauge("varwatch_watch_streams", "Watch streams being served.", func(s *snapshot) float64 { return float64(s.gs.WatchStreams) })
	gauge("varwatch_watch_streams_lagging", "Watch streams with at least half their buffer waiting, or (coalescing) with changes merged while waiting.",
		func(s *snapshot) float64 { return float64(s.gs.LaggingStreams) })
	gauge("varwatch_filter_chain_feeds", "Filter chain feeds running (one per chain and session).", func(s *snapshot) float64 { return float64(s.gs.ChainFeeds) })
	counters("varwatch_updates_delivered_total", "Updates sent to watch streams, by update type.", []string{"type"},
		func(s *snapshot, emit func(float64, ...string)) {
			for _, t := range grpcapi.UpdateTypes {
				emit(f(s.gs.Delivered[t]), t)
			}
		})
	counter("varwatch_updates_coalesced_total", "Changes merged into a later change of the same variable before delivery (coalescing streams).",
		func(s *snapshot) float64 { return f(s.gs.Coalesced) })
	counter("varwatch_updates_dropped_total", "Updates dropped by filters (each counted once per chain run, not per stream).", func(s *snapshot) float64 {
		var n uint64
		for _, p := range s.ps {
			n += p.Dropped
		}
		return f(n)
	})
	counters("varwatch_watch_stream_ends_total", "Watch streams ended, by reason.", []string{"reason"},
		func(s *snapshot, emit func(float64, ...string)) {
			for _, reason := range grpcapi.EndReasons {
				emit(f(s.gs.StreamEnds[reason]), reason)
			}
		})

	// Filters, one series per loaded plugin.
	counters("varwatch_filter_updates_in_total", "Updates that reached the filter.", []string{"filter"},
		func(s *snapshot, emit func(float64, ...string)) {
			for _, p := range s.ps {
				emit(f(p.In), p.Name)
			}
		})
	counters("varwatch_filter_updates_total", "Updates the filter handled, by result (passed, dropped, replaced).", []string{"filter", "result"},
		func(s *snapshot, emit func(float64, ...string)) {
			for _, p := range s.ps {
				emit(f(p.Passed), p.Name, "passed")
				emit(f(p.Dropped), p.Name, "dropped")
				emit(f(p.Replaced), p.Name, "replaced")
			}
		})
	counters("varwatch_filter_errors_total", "Filter batches that failed, by kind of fault.", []string{"filter", "kind"},
		func(s *snapshot, emit func(float64, ...string)) {
			for _, p := range s.ps {
				for _, kind := range slices.Sorted(maps.Keys(p.Errors)) {
					emit(f(p.Errors[kind]), p.Name, kind)
				}
			}
		})
	counters("varwatch_filter_restarts_total", "Filter instances re-created after a fault.", []string{"filter"},
		func(s *snapshot, emit func(float64, ...string)) {
			for _, p := range s.ps {
				emit(f(p.Restarts), p.Name)
			}
		})
	return c
}

// Describe sends every family's description.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, fam := range c.fams {
		ch <- fam.desc
	}
	ch <- c.batchSizes
}

// Collect takes one snapshot and sends every family's samples.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	for _, fam := range c.fams {
		fam.collect(s, func(v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(fam.desc, fam.typ, v, labels...)
		})
	}
	ch <- batchHistogram(c.batchSizes, s.es.BatchSizes)
}

func (c *collector) snapshot() *snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	if es, err := c.eng.Stats(ctx); err == nil {
		c.last = es
	}
	cancel()
	s := &snapshot{es: c.last, gs: c.api.Stats()}
	if c.mgr != nil {
		s.ps = c.mgr.Stats()
	}
	return s
}

// batchHistogram turns the engine's per-bucket counts into Prometheus's
// cumulative ones.
func batchHistogram(desc *prometheus.Desc, h engine.Histogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, bound := range h.Bounds {
		cum += h.Counts[i]
		buckets[bound] = cum
	}
	return prometheus.MustNewConstHistogram(desc, h.Count(), h.Sum, buckets)
}
