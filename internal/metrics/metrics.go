// Package metrics is a small Prometheus exposition library: counters,
// gauges and fixed-bucket histograms, with a few fixed label values or
// labels computed at scrape time, written in the text format 0.0.4.
//
// It exists so that varwatch serves /metrics without the weight of
// prometheus/client_golang: the server's numbers already live in atomics
// of the engine and the gRPC adapter (engine.Stats, grpcapi.Server.Stats),
// so most families here are callbacks read at scrape time, and the hot
// paths never see this package.
//
// # Notes
//
// Registration happens at start and panics on a bad or duplicate name (a
// programming error). Counter, Gauge and Histogram are safe for concurrent
// use and lock-free. A scrape holds the registry's lock, so callbacks run
// one scrape at a time.
package metrics

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentType is the media type of the text format this package writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Type is a metric family's type, as written on its # TYPE line.
type Type string

// The family types.
const (
	TypeCounter   Type = "counter"
	TypeGauge     Type = "gauge"
	TypeHistogram Type = "histogram"
)

// Label is one label of a sample.
type Label struct{ Name, Value string }

// HistogramValue is a histogram's state: Counts has one entry per bound
// plus a last one for +Inf, each the observations of that bucket alone
// (not cumulative; the writer accumulates).
type HistogramValue struct {
	Bounds []float64
	Counts []uint64
	Sum    float64
}

// Emit hands one sample of a family to the writer during a scrape. For a
// histogram family use EmitHistogram instead.
type Emit func(value float64, labels ...Label)

// family is one metric family.
type family struct {
	name, help string
	typ        Type
	// collect emits the samples of a counter or gauge family; hist the
	// histograms of a histogram family (one per label set).
	collect func(emit Emit)
	hist    func(emit func(h HistogramValue, labels ...Label))
}

// Registry holds metric families and writes them. The zero value is not
// usable; call NewRegistry.
type Registry struct {
	mu     sync.Mutex // guards fams and hooks, and serializes scrapes
	fams   []*family
	names  map[string]bool
	before []func()
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{names: map[string]bool{}} }

var (
	nameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

func (r *Registry) add(f *family) {
	if !nameRE.MatchString(f.name) {
		panic("metrics: invalid metric name " + strconv.Quote(f.name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[f.name] {
		panic("metrics: duplicate metric " + f.name)
	}
	r.names[f.name] = true
	r.fams = append(r.fams, f)
}

// BeforeScrape registers f to run at the start of every scrape, before
// any family is collected: a place to take one snapshot that several
// callback families read.
func (r *Registry) BeforeScrape(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.before = append(r.before, f)
}

// Collect registers a counter or gauge family whose samples f emits at
// scrape time, each with its own labels (say one per loaded filter).
func (r *Registry) Collect(name, help string, typ Type, f func(emit Emit)) {
	if typ != TypeCounter && typ != TypeGauge {
		panic("metrics: Collect of a " + string(typ))
	}
	r.add(&family{name: name, help: help, typ: typ, collect: f})
}

// CounterFunc registers a counter whose value f returns at scrape time.
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	r.Collect(name, help, TypeCounter, func(emit Emit) { emit(f()) })
}

// GaugeFunc registers a gauge whose value f returns at scrape time.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.Collect(name, help, TypeGauge, func(emit Emit) { emit(f()) })
}

// HistogramFunc registers a histogram whose state f returns at scrape
// time.
func (r *Registry) HistogramFunc(name, help string, f func() HistogramValue) {
	r.add(&family{name: name, help: help, typ: TypeHistogram,
		hist: func(emit func(HistogramValue, ...Label)) { emit(f()) }})
}

// Counter is a monotonic counter. Lock-free.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// NewCounter registers a counter.
func (r *Registry) NewCounter(name, help string) *Counter {
	c := &Counter{}
	r.CounterFunc(name, help, func() float64 { return float64(c.Value()) })
	return c
}

// CounterVec is a counter family with one label and a fixed set of values,
// each its own Counter: look the counters up once and keep them.
type CounterVec struct {
	label  string
	values []string
	cs     []Counter
}

// NewCounterVec registers a counter family with label taking values.
func (r *Registry) NewCounterVec(name, help, label string, values ...string) *CounterVec {
	if !labelRE.MatchString(label) {
		panic("metrics: invalid label name " + strconv.Quote(label))
	}
	v := &CounterVec{label: label, values: slices.Clone(values), cs: make([]Counter, len(values))}
	r.Collect(name, help, TypeCounter, func(emit Emit) {
		for i := range v.cs {
			emit(float64(v.cs[i].Value()), Label{label, v.values[i]})
		}
	})
	return v
}

// With returns the counter of value, which must be one of the values the
// vector was registered with (anything else is a programming error and
// panics).
func (v *CounterVec) With(value string) *Counter {
	i := slices.Index(v.values, value)
	if i < 0 {
		panic("metrics: label value " + strconv.Quote(value) + " was not registered for " + v.label)
	}
	return &v.cs[i]
}

// Gauge is a value that goes up and down. Lock-free.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the value.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds d (which may be negative).
func (g *Gauge) Add(d float64) {
	for {
		old := g.bits.Load()
		if g.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Value returns the value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// NewGauge registers a gauge.
func (r *Registry) NewGauge(name, help string) *Gauge {
	g := &Gauge{}
	r.GaugeFunc(name, help, g.Value)
	return g
}

// Histogram counts observations in fixed buckets. Lock-free.
type Histogram struct {
	bounds []float64
	counts []atomic.Uint64 // len(bounds)+1
	sum    atomic.Uint64   // float64 bits
}

// NewHistogram registers a histogram with the given inclusive upper
// bounds, which must ascend.
func (r *Registry) NewHistogram(name, help string, bounds []float64) *Histogram {
	if !slices.IsSorted(bounds) {
		panic("metrics: histogram bounds of " + name + " do not ascend")
	}
	h := &Histogram{bounds: slices.Clone(bounds), counts: make([]atomic.Uint64, len(bounds)+1)}
	r.HistogramFunc(name, help, h.Value)
	return h
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v) // the first bound >= v
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Value returns the histogram's state.
func (h *Histogram) Value() HistogramValue {
	hv := HistogramValue{Bounds: h.bounds, Counts: make([]uint64, len(h.counts)), Sum: math.Float64frombits(h.sum.Load())}
	for i := range h.counts {
		hv.Counts[i] = h.counts[i].Load()
	}
	return hv
}

// WriteText writes every family in the text format 0.0.4, in
// registration order.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.before {
		f()
	}
	var b bytes.Buffer
	for _, f := range r.fams {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.typ)
		if f.collect != nil {
			f.collect(func(v float64, labels ...Label) { writeSample(&b, f.name, labels, v) })
			continue
		}
		f.hist(func(h HistogramValue, labels ...Label) { writeHistogram(&b, f.name, labels, h) })
	}
	_, err := w.Write(b.Bytes())
	return err
}

// ServeHTTP answers a scrape.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", ContentType)
	_ = r.WriteText(w)
}

func writeHistogram(b *bytes.Buffer, name string, labels []Label, h HistogramValue) {
	var cum uint64
	for i, c := range h.Counts {
		cum += c
		le := "+Inf"
		if i < len(h.Bounds) {
			le = formatFloat(h.Bounds[i])
		}
		writeSample(b, name+"_bucket", append(slices.Clip(labels), Label{"le", le}), float64(cum))
	}
	writeSample(b, name+"_sum", labels, h.Sum)
	writeSample(b, name+"_count", labels, float64(cum))
}

func writeSample(b *bytes.Buffer, name string, labels []Label, v float64) {
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(l.Name)
			b.WriteString(`="`)
			b.WriteString(escapeLabel(l.Value))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatFloat(v))
	b.WriteByte('\n')
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }
