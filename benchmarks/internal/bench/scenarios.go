package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// peer is an embedded server of another system, started once per run;
// each row gets a fresh namespace on it (a bucket, a key prefix).
type peer interface {
	name() string
	// system is a fresh namespace whose streams are spread round-robin
	// over conns client connections.
	system(ctx context.Context, conns int) (system, error)
	close()
}

func (h *harness) startPeers(ctx context.Context) error {
	needs := false
	for _, s := range h.o.Scenarios {
		needs = needs || s == "delivery" || s == "pipelined" || s == "fanout" || s == "latency"
	}
	if !needs {
		return nil
	}
	for _, name := range h.o.Peers {
		h.logf("starting embedded %s", name)
		var p peer
		var err error
		switch name {
		case "nats":
			p, err = startNATS()
		case "etcd":
			p, err = startEtcd(ctx)
		}
		if err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		h.peers = append(h.peers, p)
	}
	return nil
}

func (h *harness) closePeers() {
	for _, p := range h.peers {
		p.close()
	}
}

// forPeers runs fn once per peer, its streams over conns connections.
func (h *harness) forPeers(ctx context.Context, conns int, fn func(name string, sys system) Row) {
	for _, p := range h.peers {
		sys, err := p.system(ctx, conns)
		if err != nil {
			h.add(failRow(Row{System: p.name()}, err))
			continue
		}
		r := fn(p.name(), sys)
		sys.close()
		h.add(r)
	}
}

// engine: single-variable sets per second through the engine's loop,
// in-process, no gRPC. Each writer owns a variable and writes 1, 2, 3...;
// every Set must return a higher revision than the writer's previous one,
// and afterwards each variable holds its writer's last value and the
// session's revision moved by exactly the number of sets.
func (h *harness) engine(ctx context.Context) {
	for _, writers := range h.sz.engineWriters {
		r := Row{Scenario: "engine", Variant: fmt.Sprintf("%d writer(s)", writers), System: "varwatch", Unit: "sets/s", higherBetter: true,
			Note: "in-process Set, one variable per writer"}
		h.add(h.engineRow(ctx, r, writers))
	}
	r := Row{Scenario: "engine", Variant: "1 writer, pipelined", System: "varwatch", Unit: "sets/s", higherBetter: true}
	r = h.enginePipelinedRow(ctx, r)
	for _, b := range h.rep.Rows {
		if r.Status == "" && b.Scenario == "engine" && b.Variant == "1 writer(s)" && b.Status == "ok" {
			r.Note = fmt.Sprintf("SetBatches, 1000 sets per call; %.2fx the blocking Set of 1 writer", r.Value/b.Value)
		}
	}
	h.add(r)
}

func (h *harness) engineRow(ctx context.Context, r Row, writers int) Row {
	e := engine.New(engine.Config{})
	defer e.Close()
	if _, _, err := e.CreateSession(ctx, engine.CreateSessionRequest{ID: "e"}); err != nil {
		return failRow(r, err)
	}
	for w := range writers {
		if _, err := e.Register(ctx, engine.RegisterRequest{Session: "e", Name: fmt.Sprintf("v%d", w), Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
			return failRow(r, err)
		}
	}
	before, err := e.GetSession(ctx, "e")
	if err != nil {
		return failRow(r, err)
	}
	counts := make([]int64, writers)
	errs := make([]error, writers)
	m := startMeter()
	deadline := time.Now().Add(h.sz.duration)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("v%d", w)
			var lastRev int64
			for n := int64(1); ; n++ {
				if n%64 == 0 && time.Now().After(deadline) {
					return
				}
				res, err := e.Set(ctx, engine.SetRequest{Session: "e", Variable: name, Value: engine.Integer(n)})
				if err != nil {
					errs[w] = err
					return
				}
				if res.Revision <= lastRev {
					errs[w] = fmt.Errorf("writer %d: revision %d after %d", w, res.Revision, lastRev)
					return
				}
				lastRev = res.Revision
				counts[w] = n
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(m.start)
	var total int64
	for w, n := range counts {
		if errs[w] != nil {
			return failRow(r, errs[w])
		}
		total += n
		v, err := e.Get(ctx, "e", fmt.Sprintf("v%d", w))
		if err != nil {
			return failRow(r, err)
		}
		if got := v.Value.Integer(); got != n || v.Version != n+1 {
			return failRow(r, fmt.Errorf("v%d holds %d at version %d, want %d at version %d", w, got, v.Version, n, n+1))
		}
	}
	m.stop(&r, total)
	after, err := e.GetSession(ctx, "e")
	if err != nil {
		return failRow(r, err)
	}
	if after.Revision-before.Revision != total {
		return failRow(r, fmt.Errorf("session revision moved by %d for %d sets", after.Revision-before.Revision, total))
	}
	r.Value, r.Delivered = float64(total)/elapsed.Seconds(), total
	return r
}

// delivery: S streams watching every key, W writers flat out (100 writes
// per call), per-update vs batched vs coalesced for varwatch; each peer
// once, with its own way of writing in bulk.
func (h *harness) delivery(ctx context.Context) {
	t := throughputRun{streams: h.sz.deliveryStream, writers: h.sz.deliveryWriter, keys: h.sz.keys, window: h.sz.window,
		batch: 100, duration: h.sz.duration, drain: h.sz.drainTimeout}
	variant := fmt.Sprintf("%dS x %dW, %d keys", t.streams, t.writers, t.keys)
	for _, m := range []struct {
		name  string
		mode  vwMode
		conns int
		note  string
	}{
		{"per-update", vwMode{}, t.streams, ""},
		{"batched", vwMode{batched: true}, t.streams, ""},
		{"coalesced", vwMode{batched: true, coalesce: true}, t.streams, ""},
		{"Watch", vwMode{mux: true}, 1, "one Watch stream carries the streams, as the peers' one connection does"},
		{"Watch VIEW_VALUE", vwMode{mux: true, view: pb.View_VIEW_VALUE}, 1, "one Watch stream carries the streams"},
	} {
		r := Row{Scenario: "delivery", Variant: variant + ", " + m.name, System: "varwatch", Unit: "changes/s", higherBetter: true}
		sys, err := newVarwatch(h.o.Server, m.mode, nil, m.conns)
		if err != nil {
			h.add(failRow(r, err))
			continue
		}
		tt := t
		tt.so = streamOpts{scheme: counterScheme(t.keys), coalesce: m.mode.coalesce, ordered: true}
		r = throughputRow(ctx, r, tt, sys)
		r.Note = strings.TrimPrefix(r.Note+"; "+m.note, "; ")
		sys.close()
		h.add(r)
	}
	h.forPeers(ctx, 1, func(name string, sys system) Row {
		r := Row{Scenario: "delivery", Variant: "*", System: name, Unit: "changes/s", higherBetter: true, Note: variant + "; " + peerNotes[name]}
		tt := t
		tt.so = streamOpts{scheme: counterScheme(t.keys), ordered: true}
		return throughputRow(ctx, r, tt, sys)
	})
}

func throughputRow(ctx context.Context, r Row, t throughputRun, sys system) Row {
	m := startMeter()
	res, err := t.run(ctx, sys)
	if err != nil {
		return failRow(r, err)
	}
	m.stop(&r, res.updates)
	s := res.elapsed.Seconds()
	r.Value, r.WritesPerSec, r.Delivered = float64(res.changes)/s, float64(res.writes)/s, res.updates
	if res.updates != res.changes {
		r.Note = fmt.Sprintf("%s updates/s carried them", fmtNum(float64(res.updates)/s))
	}
	return r
}

type watchAPI struct {
	id, name string // id: how --apis names it
	mode     vwMode
}

// watchAPIs are the ways a varwatch client can watch, each a row of the
// fan-out and latency scenarios. Watch uses the raw generated stub: one
// Watch stream per connection carrying all that connection's watches.
var watchAPIs = []watchAPI{
	{"plain", "WatchVariables", vwMode{}},
	{"batched", "WatchVariablesBatched", vwMode{batched: true}},
	{"watch", "Watch", vwMode{mux: true}},
	{"watch-value", "Watch VIEW_VALUE", vwMode{mux: true, view: pb.View_VIEW_VALUE}},
	{"go-client", "Watch, Go client", vwMode{goClient: true}},
}

// WatchAPIIDs are the names --apis takes.
func WatchAPIIDs() []string {
	var ids []string
	for _, a := range watchAPIs {
		ids = append(ids, a.id)
	}
	return ids
}

// chosen is apis without those Options.APIs leaves out.
func (h *harness) chosen(apis []watchAPI) []watchAPI {
	if len(h.o.APIs) == 0 {
		return apis
	}
	var out []watchAPI
	for _, a := range apis {
		if slices.Contains(h.o.APIs, a.id) {
			out = append(out, a)
		}
	}
	return out
}

// fanout: one writer at a fixed rate to many streams watching every key,
// the streams over a given number of client connections (the same number
// for every system); first the same writer with no streams at all, whose
// acked rate is what "the writer is not starved" compares to.
func (h *harness) fanout(ctx context.Context) {
	idle := map[int]bool{}
	for _, fc := range h.sz.fanout {
		if h.o.FanoutConns > 0 && fc.conns != h.o.FanoutConns {
			continue
		}
		if !idle[fc.rate] {
			idle[fc.rate] = true
			o := openLoopRun{streams: 0, keys: h.sz.keys, rate: fc.rate, lanes: 4, duration: h.sz.duration, drain: h.sz.drainTimeout}
			h.openLoopRows(ctx, "fanout", fmt.Sprintf("0 streams, %d writes/s", fc.rate), o, 1, watchAPIs[:1], true)
		}
		o := openLoopRun{streams: fc.streams, keys: h.sz.keys, rate: fc.rate, lanes: 4, duration: h.sz.duration, drain: h.sz.drainTimeout}
		variant := fmt.Sprintf("%d streams, %d writes/s, %d conns", fc.streams, fc.rate, fc.conns)
		apis := watchAPIs
		if fc.streams > 2000 {
			apis = watchAPIs[1:] // one message per update to 10k streams is past what this machine delivers
		}
		h.openLoopRows(ctx, "fanout", variant, o, fc.conns, h.chosen(apis), true)
	}
	writerRatios(h.rep.Rows)
}

// latency: 100 streams, fixed offered write rates, set-to-receive latency
// from each write's scheduled time; before the highest rate, the same
// writer with no streams.
func (h *harness) latency(ctx context.Context) {
	for i, rate := range h.sz.latencyRates {
		if i == len(h.sz.latencyRates)-1 {
			// The writer alone at the highest rate: how much of the
			// latency below is its own round trip.
			idle := openLoopRun{keys: h.sz.keys, rate: rate, lanes: 4, duration: h.sz.duration, drain: h.sz.drainTimeout}
			h.openLoopRows(ctx, "latency", fmt.Sprintf("0 streams, %d writes/s", rate), idle, 1, watchAPIs[:1], false)
		}
		o := openLoopRun{streams: h.sz.latencyStreams, keys: h.sz.keys, rate: rate, lanes: 4, duration: h.sz.duration, drain: h.sz.drainTimeout}
		variant := fmt.Sprintf("%d streams, %d writes/s", o.streams, rate)
		h.openLoopRows(ctx, "latency", variant, o, defaultConns(o.streams), h.chosen(watchAPIs), false)
		if i == len(h.sz.latencyRates)-1 {
			// The same load from a writer that does not wait for one
			// write's answer before the next is due: what a producer at
			// this rate does (the 4 blocking lanes above need every
			// round trip under 400 µs to keep up).
			o.pipelined = true
			h.openLoopRows(ctx, "latency", variant+", pipelined writer", o, defaultConns(o.streams), h.chosen(watchAPIs), false)
		}
	}
}

// defaultConns: one connection per 64 streams, at most 16.
func defaultConns(streams int) int {
	return max(1, min((streams+63)/64, 16))
}

// openLoopRows runs o once per varwatch watch API and once per peer, the
// streams over conns connections each.
func (h *harness) openLoopRows(ctx context.Context, scenario, variant string, o openLoopRun, conns int, apis []watchAPI, throughput bool) {
	unit := "events/s"
	run := func(r Row, sys system) Row { return openLoopRow(ctx, r, o, sys, throughput) }
	for _, api := range apis {
		r := Row{Scenario: scenario, Variant: variant, API: api.name, System: "varwatch", Unit: unit, higherBetter: throughput}
		if o.streams == 0 {
			r.API = ""
		}
		sys, err := newVarwatch(h.o.Server, api.mode, nil, conns)
		if err != nil {
			h.add(failRow(r, err))
			continue
		}
		if o.pipelined {
			r = run(r, &vwAsyncSystem{vwSystem: sys, kind: vwAsyncStream})
			r.Note = joinNote("writer: WriteVariables, Go client Writer", r.Note)
		} else {
			r = run(r, sys)
		}
		sys.close()
		h.add(r)
	}
	if o.pipelined {
		// etcd has no pipelined writer here, and NATS KV keeps 64
		// revisions of a key: a watcher more than 64 writes behind on a
		// key, which an open-loop pipelined writer soon makes, loses
		// writes and fails the row's verification.
		return
	}
	h.forPeers(ctx, conns, func(name string, sys system) Row {
		return run(Row{Scenario: scenario, Variant: variant, System: name, Unit: unit, higherBetter: throughput}, sys)
	})
}

// writerRatios sets, on every fan-out row with streams, the acked write
// rate as a share of the same system's writer with no streams at the same
// offered rate, in the same run.
func writerRatios(rows []Row) {
	type key struct {
		system string
		rate   int
	}
	idle := map[key]float64{}
	for _, r := range rows {
		if r.Scenario == "fanout" && r.Status == "ok" && r.streams == 0 {
			idle[key{r.System, r.offered}] = r.WritesPerSec
		}
	}
	for i := range rows {
		r := &rows[i]
		if r.Scenario != "fanout" || r.Status != "ok" || r.streams == 0 {
			continue
		}
		if base := idle[key{r.System, r.offered}]; base > 0 {
			r.WriterVsIdle = r.WritesPerSec / base
			r.Note = fmt.Sprintf("writer at %.0f%% of its rate with no streams; %s", 100*r.WriterVsIdle, r.Note)
		}
	}
}

// peerNotes say how each peer writes in bulk in the delivery scenario.
var peerNotes = map[string]string{
	"nats": "100 async publishes in flight per writer, memory storage, history 64",
	"etcd": "Txns of up to 100 puts to distinct keys (one revision each), no fsync",
}

// openLoopRow runs o on sys and fills r: acked writes/s over the writing,
// events/s until the last stream had everything (throughput rows with
// streams; otherwise the row's value is the acked writes/s), latency from
// each write's scheduled time, the writer's ack p99 and memory per stream.
func openLoopRow(ctx context.Context, r Row, o openLoopRun, sys system, throughput bool) Row {
	r.streams, r.offered = o.streams, o.rate
	m := startMeter()
	res, err := o.run(ctx, sys)
	if err != nil {
		return failRow(r, err)
	}
	m.stop(&r, res.updates)
	r.WritesPerSec, r.Delivered = float64(res.writes)/res.writing.Seconds(), res.updates
	r.Value = float64(res.updates) / res.elapsed.Seconds()
	if !throughput || o.streams == 0 {
		r.Unit = "writes/s"
		r.Value = r.WritesPerSec
	}
	r.setLatency(res.hist)
	r.AckP99 = float64(res.acks.quantile(0.99)) / 1e6
	notes := []string{fmt.Sprintf("acked %.1f%% of offered, ack p99 %s ms", 100*float64(res.writes)/float64(res.offered), fmtMs(r.AckP99))}
	if o.streams > 0 {
		r.MemPerStream = res.mem.perStream(o.streams)
		notes = append(notes, fmt.Sprintf("memory per stream %s B (heap %s + stacks %s)", fmtNum(r.MemPerStream),
			fmtNum(float64(res.mem.heap)/float64(o.streams)), fmtNum(float64(res.mem.stack)/float64(o.streams))))
	}
	if res.lateStop {
		notes = append(notes, "writer fell behind schedule and stopped early")
	}
	r.Note = strings.Join(notes, "; ")
	return r
}
