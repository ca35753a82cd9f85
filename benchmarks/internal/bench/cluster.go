package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/varwatch/varwatch/engine"
)

// cluster: what scaling out costs and gives, in one run on one machine.
// Each measurement runs twice, on one in-process varwatch server (the
// in-memory engine, as every other row) and on 3 varwatch nodes over a
// 3-server JetStream cluster (replicas 3, file storage), all in this
// process on loopback; the 3-node row carries its ratio to the one-node
// row (Ratios["1 node"], the table's "vs 1 node" column, with the vs
// columns' meaning: throughput 3 nodes / 1 node, latency 1 node's p99 /
// 3 nodes'; above 1, the cluster did better) and says it in words in the
// note. Every row verifies its streams as the other rows do: each saw
// every write exactly once, in order.
//
//   - writes: blocking SetVariable writers round-robin over the nodes, a
//     stream on each node; acked sets/s.
//   - pipelined writes: one Go client Writer (WriteVariables) on node A,
//     a stream on each node; acked sets/s.
//   - fan-out: streams spread over the nodes (2 connections per node),
//     fed by one writer on node A: flat out (a pipelined writer, as fast
//     as the slowest stream takes it), and at a fixed rate (blocking
//     writes); events/s delivered and acked writes/s.
//   - set to watcher: the writer on node A, the streams on B and C, at a
//     fixed rate; p50/p99/p999 from each write's scheduled time.
//
// The cluster is started once for the scenario; a row's session is its
// own, and is deleted after the row.
func (h *harness) cluster(ctx context.Context) {
	if h.o.Server != "" {
		h.add(Row{Scenario: "cluster", System: "varwatch", Status: "skipped", Note: "starts its own servers and JetStream cluster"})
		return
	}
	h.logf("starting 3 varwatch nodes over a 3-server JetStream cluster")
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	c, err := startVWCluster(sctx, 3)
	cancel()
	if err != nil {
		h.add(failRow(Row{Scenario: "cluster", Variant: "3 nodes", System: "varwatch"}, err))
		return
	}
	defer c.close()
	h.settle()
	cz, sz := h.sz.cluster, h.sz
	watchMode := vwMode{mux: true}
	all, a, bc := []int{0, 1, 2}, []int{0}, []int{1, 2}

	// Writes: a stream per node, so that the row also proves every node
	// applied every write, in order.
	keys := 3 * cz.writers
	tr := throughputRun{streams: 3, writers: cz.writers, keys: keys, window: int64(keys) * 32, batch: 1,
		duration: sz.duration, drain: sz.drainTimeout, so: streamOpts{scheme: counterScheme(keys), ordered: true}}
	h.clusterPair(ctx, c, Row{Variant: fmt.Sprintf("%d writers, 3 streams", cz.writers), API: "SetVariable", Unit: "sets/s", higherBetter: true},
		watchMode, all, all, 3, func(r Row, sys *vwSpread) Row {
			r = throughputRow(ctx, r, tr, sys)
			if r.Status == "" {
				delivered := r.Value
				r.Value = r.WritesPerSec
				r.Note = fmt.Sprintf("blocking writers and 3 streams round-robin over the nodes; %s changes/s delivered", fmtNum(delivered))
			}
			return r
		})

	p := pipelinedRun{streams: 3, keys: 10 * sz.keys, duration: sz.duration, drain: sz.drainTimeout}
	p.window = int64(p.keys) * 32
	h.clusterPair(ctx, c, Row{Variant: "1 pipelined writer, 3 streams", API: "WriteVariables, Go client Writer", Unit: "sets/s", higherBetter: true},
		watchMode, all, a, 3, func(r Row, sys *vwSpread) Row {
			r = pipelinedRow(ctx, r, p, &vwAsyncSystem{vwSystem: sys.vwSystem, kind: vwAsyncStream})
			if r.Status == "" {
				delivered := r.Value
				r.Value = r.WritesPerSec
				r.Note = fmt.Sprintf("the writer on node A, 3 streams round-robin over the nodes; %s events/s delivered", fmtNum(delivered))
			}
			return r
		})

	// Fan-out flat out: what the streams sustain, so that events/s is the
	// servers' delivery, not an offered rate. A write reaches every
	// stream: a window of 4 writes per key keeps what waits for the
	// slowest stream (window x streams updates) in memory bounds.
	ff := pipelinedRun{streams: cz.fanoutStreams, keys: sz.keys, window: int64(sz.keys) * 4, duration: sz.duration, drain: sz.drainTimeout}
	h.clusterPair(ctx, c, Row{Variant: fmt.Sprintf("fan-out flat out, %d streams", ff.streams), API: "Watch", Unit: "events/s", higherBetter: true},
		watchMode, all, a, 6, func(r Row, sys *vwSpread) Row {
			r = pipelinedRow(ctx, r, ff, &vwAsyncSystem{vwSystem: sys.vwSystem, kind: vwAsyncStream})
			r.Note = joinNote("6 connections (3 nodes: 2 per node), one pipelined writer (WriteVariables, Go client Writer) on node A, never more than 4 writes per key ahead of the slowest stream", r.Note)
			return r
		})

	fo := openLoopRun{streams: cz.fanoutStreams, keys: sz.keys, rate: cz.fanoutRate, lanes: 4, duration: sz.duration, drain: sz.drainTimeout}
	h.clusterPair(ctx, c, Row{Variant: fmt.Sprintf("fan-out, %d streams, %d writes/s", fo.streams, fo.rate), API: "Watch", Unit: "events/s", higherBetter: true},
		watchMode, all, a, 6, func(r Row, sys *vwSpread) Row {
			r = openLoopRow(ctx, r, fo, sys, true)
			r.Note = joinNote("6 connections (3 nodes: 2 per node), the writer (4 lanes, SetVariable) on node A", r.Note)
			return r
		})

	lo := openLoopRun{streams: cz.latencyStreams, keys: sz.keys, rate: cz.latencyRate, lanes: 4, duration: sz.duration, drain: sz.drainTimeout}
	h.clusterPair(ctx, c, Row{Variant: fmt.Sprintf("set to watcher, %d streams, %d writes/s", lo.streams, lo.rate), API: "Watch", Unit: "writes/s"},
		watchMode, bc, a, 2, func(r Row, sys *vwSpread) Row {
			r = openLoopRow(ctx, r, lo, sys, false)
			r.Note = joinNote("the writer (4 lanes, SetVariable) on node A, the streams on B and C (1 node: all on it)", r.Note)
			return r
		})
}

// clusterPair runs one measurement twice, on a fresh one-node server and
// on c (its streams' connections over the nodes watch, its writers over
// write, by index), and records both rows, the 3-node one with its ratio
// to the one-node one.
func (h *harness) clusterPair(ctx context.Context, c *vwCluster, r Row, mode vwMode, watch, write []int, conns int, run func(Row, *vwSpread) Row) {
	r.Scenario, r.System = "cluster", "varwatch"
	base := r.Variant

	one := r
	one.Variant = base + ", 1 node"
	if srv, err := startServer(engine.Config{}, nil); err != nil {
		one = failRow(one, err)
	} else if sys, err := newSpread(mode, []string{srv.addr}, []string{srv.addr}, conns); err != nil {
		srv.close()
		one = failRow(one, err)
	} else {
		sys.own = srv
		one = run(one, sys)
		sys.close()
	}
	h.add(one)

	three := r
	three.Variant = base + ", 3 nodes"
	if sys, err := newSpread(mode, c.addrs(watch...), c.addrs(write...), conns); err != nil {
		three = failRow(three, err)
	} else {
		three = run(three, sys)
		sys.close()
	}
	vsOneNode(&three, one)
	h.add(three)
}

// vsOneNode sets the 3-node row's ratio to the one-node row of the same
// run, as a vs column does (above 1: the cluster did better), and says it
// in the note the way round a reader asks it.
func vsOneNode(three *Row, one Row) {
	if three.Status != "" || one.Status != "" {
		return
	}
	var ratio float64
	var words string
	switch {
	case three.higherBetter && one.Value > 0:
		ratio = three.Value / one.Value
		words = fmt.Sprintf("%.3gx the one-node row's %s", ratio, three.Unit)
		if three.WritesPerSec > 0 && one.WritesPerSec > 0 && three.Unit != "sets/s" {
			words += fmt.Sprintf(", acked writes/s %.3gx", three.WritesPerSec/one.WritesPerSec)
		}
	case !three.higherBetter && three.P99 > 0 && one.P99 > 0:
		ratio = one.P99 / three.P99
		words = fmt.Sprintf("p99 %.3gx the one-node row's", three.P99/one.P99)
	default:
		return
	}
	three.Ratios = map[string]float64{"1 node": ratio}
	three.Note = joinNote(words, three.Note)
}
