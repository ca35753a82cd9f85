// Package bench is varwatch's benchmark harness: named scenarios run
// against an in-process (or external) varwatch server and, side by side,
// against embedded NATS JetStream KV and etcd, each row verified (every
// write seen, in order, values as written) so a fast wrong answer cannot
// pass as a result.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/varwatch/varwatch/grpcapi"
)

// Scenarios, in the order they run.
var Scenarios = []string{"grpc-raw", "engine", "delivery", "pipelined", "upsert", "fanout", "latency", "memory", "filters", "cluster"}

// PeerNames are the peers the harness can embed.
var PeerNames = []string{"nats", "etcd"}

// Options choose what runs and how big.
type Options struct {
	Scenarios []string // empty: all
	Peers     []string // empty: none
	// Server is an external varwatch server (host:port); empty starts one
	// in-process for every row.
	Server string
	// Duration is how long each row writes (default 3s; --quick 1s).
	Duration time.Duration
	// Size is "full", "quick" or "tiny" (the smoke test).
	Size string
	// RepoRoot is the varwatch repository (for the filter plugins); empty
	// finds it from the working directory.
	RepoRoot string
	// APIs are the varwatch watch APIs the fan-out and latency rows use
	// (WatchAPIIDs); empty: all.
	APIs []string
	// FanoutConns, if positive, runs only the fan-out cases over that many
	// connections (and their no-stream writer row).
	FanoutConns int
	// Transport is the in-process server's grpc-go tuning; nil: varwatch
	// serve's defaults (grpcapi.DefaultTransport).
	Transport *grpcapi.Transport
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Row is one line of the table.
type Row struct {
	Scenario string `json:"scenario"`
	Variant  string `json:"variant"`
	// API is how varwatch's streams watch (fan-out and latency rows).
	API    string `json:"api,omitempty"`
	System string `json:"system"`
	// Value is the row's headline number, in Unit.
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// WritesPerSec is the write rate achieved (delivery, fan-out, latency,
	// filters).
	WritesPerSec float64 `json:"writes_per_sec,omitempty"`
	// Latencies (set to receive), milliseconds.
	P50  float64 `json:"p50_ms,omitempty"`
	P99  float64 `json:"p99_ms,omitempty"`
	P999 float64 `json:"p999_ms,omitempty"`
	// AckP99 is the writer's p99 from a write's scheduled time to its
	// acknowledgement, milliseconds (fan-out and latency rows).
	AckP99 float64 `json:"ack_p99_ms,omitempty"`
	// MemPerStream is the growth of the process's live heap plus goroutine
	// stacks under load, per stream (fan-out and latency rows).
	MemPerStream float64 `json:"mem_per_stream_bytes,omitempty"`
	// WriterVsIdle is the acked write rate as a share of the same writer's
	// with no streams, same run (fan-out rows).
	WriterVsIdle float64 `json:"writer_vs_idle,omitempty"`
	// Updates delivered in total (the denominator of AllocsPerUpdate).
	Delivered       int64   `json:"delivered,omitempty"`
	CPUSeconds      float64 `json:"cpu_seconds"`
	AllocsPerUpdate float64 `json:"allocs_per_update,omitempty"`
	// Ratios: varwatch's advantage over each peer measured in this run
	// (throughput: varwatch/peer; latency rows: peer p99 / varwatch p99).
	Ratios map[string]float64 `json:"ratios,omitempty"`
	Note   string             `json:"note,omitempty"`
	Status string             `json:"status"` // ok, FAILED, skipped
	Error  string             `json:"error,omitempty"`
	// higherBetter: the ratio compares Value (true) or P99 (false).
	higherBetter bool
	seconds      float64
	// streams and offered (writes/s) of an open-loop row.
	streams, offered int
}

// Report is the whole run.
type Report struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	LoadAvg  string    `json:"loadavg_before"`
	LoadEnd  string    `json:"loadavg_after"`
	CPUs     int       `json:"cpus"`
	Go       string    `json:"go"`
	Server   string    `json:"server"`
	Size     string    `json:"size"`
	Duration string    `json:"duration"`
	// Transport is the in-process server's grpc-go tuning.
	Transport grpcapi.Transport `json:"transport"`
	Rows      []Row             `json:"rows"`
}

// Failed reports whether any row failed verification or could not run.
func (r *Report) Failed() bool {
	for _, row := range r.Rows {
		if row.Status == "FAILED" {
			return true
		}
	}
	return false
}

// sizes: the knobs of each scenario for full, quick and tiny runs.
type sizes struct {
	duration       time.Duration
	deliveryStream int
	deliveryWriter int
	keys           int
	window         int64
	fanout         []fanoutCase
	latencyStreams int
	latencyRates   []int
	memoryStreams  []int
	engineWriters  []int
	drainTimeout   time.Duration
	cluster        clusterSizes
}

// clusterSizes are the cluster scenario's knobs.
type clusterSizes struct {
	writers                     int // blocking writers, spread over the nodes
	fanoutStreams, fanoutRate   int // streams spread over the nodes; writes/s offered on one
	latencyStreams, latencyRate int // streams on the nodes the writer is not on
}

type fanoutCase struct{ streams, rate, conns int }

func sizesFor(o Options) sizes {
	s := sizes{duration: 3 * time.Second, deliveryStream: 4, deliveryWriter: 2, keys: 100, window: 3200,
		fanout:         []fanoutCase{{1000, 1000, 4}, {1000, 1000, 1000}, {10000, 100, 16}},
		latencyStreams: 100, latencyRates: []int{200, 2000, 10000},
		memoryStreams: []int{1000, 10000}, engineWriters: []int{1, 4}, drainTimeout: 30 * time.Second,
		cluster: clusterSizes{writers: 16, fanoutStreams: 1000, fanoutRate: 1000, latencyStreams: 100, latencyRate: 1000}}
	switch o.Size {
	case "quick":
		s.duration = time.Second
		s.fanout = []fanoutCase{{1000, 200, 4}}
		s.latencyRates = []int{200, 2000}
		s.drainTimeout = 15 * time.Second
	case "tiny":
		s.duration = 150 * time.Millisecond
		s.deliveryStream, s.keys, s.window = 2, 20, 2000
		s.fanout = []fanoutCase{{20, 200, 4}, {20, 200, 20}}
		s.latencyStreams, s.latencyRates = 5, []int{500}
		s.memoryStreams = []int{50}
		s.engineWriters = []int{1, 2}
		s.cluster = clusterSizes{writers: 4, fanoutStreams: 12, fanoutRate: 200, latencyStreams: 4, latencyRate: 200}
		s.drainTimeout = 15 * time.Second
	}
	if o.Duration > 0 {
		s.duration = o.Duration
	}
	// A stream may lag the writers by at most what every system still
	// delivers to a lagging watcher: a NATS KV bucket keeps 64 revisions
	// per key (its maximum history), and a watcher more than 64 writes of
	// one key behind (an ordered consumer that resets under load falls
	// further behind while it does) loses the older ones for good. Keep
	// the window at half that, counted over all keys (full: 3,200).
	s.window = min(s.window, int64(s.keys)*32)
	if o.Size == "tiny" {
		// The smoke test checks that every row runs, not how fast: keep a
		// NATS watcher far inside its history (8 writes per key), where
		// its ordered consumer's resets under load have not lost writes.
		s.window = min(s.window, int64(s.keys)*8)
	}
	return s
}

// Run runs the chosen scenarios and returns every row, failed ones
// included.
func Run(ctx context.Context, o Options) (*Report, error) {
	if len(o.Scenarios) == 0 {
		o.Scenarios = Scenarios
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(Scenarios, ", "))
		}
	}
	for _, p := range o.Peers {
		if !slices.Contains(PeerNames, p) {
			return nil, fmt.Errorf("unknown peer %q (have %s, or none)", p, strings.Join(PeerNames, ", "))
		}
	}
	for _, a := range o.APIs {
		if !slices.Contains(WatchAPIIDs(), a) {
			return nil, fmt.Errorf("unknown watch API %q (have %s)", a, strings.Join(WatchAPIIDs(), ", "))
		}
	}
	if o.Size == "" {
		o.Size = "full"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Transport != nil {
		serverTransport = *o.Transport
	}
	sz := sizesFor(o)
	rep := &Report{Started: time.Now(), LoadAvg: loadAvg(), CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Server: o.Server, Size: o.Size, Duration: sz.duration.String(), Transport: serverTransport}
	if rep.Server == "" {
		rep.Server = "in-process"
	}
	h := &harness{o: o, sz: sz, rep: rep}
	defer h.closePeers()
	if err := h.startPeers(ctx); err != nil {
		return nil, err
	}
	for _, s := range Scenarios {
		if !slices.Contains(o.Scenarios, s) {
			continue
		}
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		scenarioFuncs[s](h, ctx)
	}
	computeRatios(rep.Rows)
	rep.Seconds = time.Since(rep.Started).Seconds()
	rep.LoadEnd = loadAvg()
	return rep, nil
}

var scenarioFuncs = map[string]func(*harness, context.Context){
	"grpc-raw":  (*harness).grpcRaw,
	"engine":    (*harness).engine,
	"delivery":  (*harness).delivery,
	"pipelined": (*harness).pipelined,
	"upsert":    (*harness).upsert,
	"fanout":    (*harness).fanout,
	"latency":   (*harness).latency,
	"memory":    (*harness).memory,
	"filters":   (*harness).filters,
	"cluster":   (*harness).cluster,
}

// harness holds what the rows share: options, the embedded peers, the
// report being filled.
type harness struct {
	o     Options
	sz    sizes
	rep   *Report
	peers []peer
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.o.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// add records a finished row and logs it.
func (h *harness) add(r Row) {
	if r.Status == "" {
		r.Status = "ok"
	}
	h.rep.Rows = append(h.rep.Rows, r)
	if r.Status == "FAILED" {
		h.logf("%-9s %-22s %s %-8s FAILED: %s", r.Scenario, r.Variant, r.API, r.System, r.Error)
		h.settle()
		return
	}
	h.logf("%-9s %-22s %s %-8s %s %s %s p99 %s ms", r.Scenario, r.Variant, r.API, r.System, r.Status, fmtNum(r.Value), r.Unit, fmtMs(r.P99))
	h.settle()
}

// settle waits, after a row, until the process is nearly idle (under 20%
// of a core over 200ms, for at most 20s): tearing down 10k streams or
// consumers goes on after a row's last update, and must not be billed to
// the next row.
func (h *harness) settle() {
	runtime.GC()
	start := time.Now()
	for time.Since(start) < 20*time.Second {
		c := cpuTime()
		time.Sleep(200 * time.Millisecond)
		if cpuTime()-c < 40*time.Millisecond {
			break
		}
	}
	if d := time.Since(start); d > time.Second {
		h.logf("settled for %s after the row", d.Round(100*time.Millisecond))
	}
}

func failRow(r Row, err error) Row {
	r.Status, r.Error = "FAILED", err.Error()
	return r
}

// computeRatios fills varwatch rows' ratios against the peer rows of the
// same scenario and variant (delivery: the peer's one row).
func computeRatios(rows []Row) {
	for i := range rows {
		r := &rows[i]
		if r.System != "varwatch" || r.Status != "ok" {
			continue
		}
		for _, p := range rows {
			if p.System == "varwatch" || p.Scenario != r.Scenario || p.Status != "ok" {
				continue
			}
			if p.Variant != r.Variant && p.Variant != "*" {
				continue
			}
			var ratio float64
			switch {
			case r.higherBetter && p.Value > 0:
				ratio = r.Value / p.Value
			case !r.higherBetter && r.P99 > 0:
				ratio = p.P99 / r.P99
			default:
				continue
			}
			if r.Ratios == nil {
				r.Ratios = map[string]float64{}
			}
			r.Ratios[p.System] = ratio
		}
	}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as an aligned text table (Markdown-friendly
// with --markdown).
func (r *Report) WriteTable(w io.Writer, markdown bool) error {
	// A "vs" column per peer, and per other baseline a row's ratio names
	// (the cluster scenario's "1 node").
	peers := []string{}
	for _, row := range r.Rows {
		if row.System != "varwatch" && row.System != "grpc-go" && !slices.Contains(peers, row.System) {
			peers = append(peers, row.System)
		}
	}
	for _, row := range r.Rows {
		for _, k := range slices.Sorted(maps.Keys(row.Ratios)) {
			if !slices.Contains(peers, k) {
				peers = append(peers, k)
			}
		}
	}
	head := []string{"scenario", "variant", "system", "result", "writes/s", "p50 ms", "p99 ms", "p999 ms", "CPU s", "allocs/upd"}
	for _, p := range peers {
		head = append(head, "vs "+p)
	}
	head = append(head, "status", "note")
	var lines [][]string
	for _, row := range r.Rows {
		variant := row.Variant
		if row.API != "" {
			variant += ", " + row.API
		}
		l := []string{row.Scenario, variant, row.System, fmtNum(row.Value) + " " + row.Unit,
			fmtOpt(row.WritesPerSec), fmtMs(row.P50), fmtMs(row.P99), fmtMs(row.P999),
			fmt.Sprintf("%.2f", row.CPUSeconds), fmtAllocs(row.AllocsPerUpdate)}
		if row.Status != "ok" {
			l[3] = "-"
		}
		for _, p := range peers {
			if v, ok := row.Ratios[p]; ok {
				l = append(l, fmt.Sprintf("%.2fx", v))
			} else {
				l = append(l, "")
			}
		}
		note := row.Note
		if row.Error != "" {
			note = strings.TrimSpace(row.Error + "; " + note)
		}
		lines = append(lines, append(l, row.Status, note))
	}
	if markdown {
		fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
		fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(head)))
		for _, l := range lines {
			fmt.Fprintf(w, "| %s |\n", strings.Join(l, " | "))
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, l := range lines {
		fmt.Fprintln(tw, strings.Join(l, "\t"))
	}
	return tw.Flush()
}

func fmtNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 10:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtOpt(v float64) string {
	if v == 0 {
		return ""
	}
	return fmtNum(v)
}

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return ""
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtAllocs(v float64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f", v)
}

// findRepoRoot walks up from the working directory to the varwatch
// module's go.mod.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(dir + "/go.mod")
		if err == nil && strings.Contains(string(b), "module github.com/varwatch/varwatch\n") {
			return dir, nil
		}
		parent := dir[:max(strings.LastIndex(dir, "/"), 0)]
		if parent == "" || parent == dir {
			return "", fmt.Errorf("no varwatch go.mod above the working directory (pass --repo)")
		}
		dir = parent
	}
}
