// Package metrics assembles the server's Prometheus registry: varwatch's
// own families, read at scrape time from the snapshots the engine, the
// gRPC adapter and the plugin manager already keep (collector.go); the
// adapter's histograms (grpcapi.Server.Collectors); Go's runtime and
// process collectors; and varwatch_build_info. README.md ("Metrics")
// lists the series.
//
// The exposition is prometheus/client_golang's, so /metrics speaks
// what a scraper negotiates: the text format 0.0.4, or protobuf for
// a Prometheus that asks.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/plugins"
)

// Sources are what the metrics read.
type Sources struct {
	Engine  *engine.Engine
	API     *grpcapi.Server
	Plugins *plugins.Manager // nil: no filters loaded
	// Journal is the --data-dir's journal; nil: in memory.
	Journal Journal
	Build   BuildInfo
}

// Journal is what the metrics read of a journal: its fsyncs, and the
// time they took (so a dashboard can show the disk's mean fsync, which is
// what a durable write waits for).
type Journal interface {
	Fsyncs() uint64
	FsyncTime() time.Duration
}

// BuildInfo labels varwatch_build_info.
type BuildInfo struct {
	// Version is the module version ("(devel)" in a checkout), Revision
	// the short VCS revision with "+dirty" for a modified tree (empty when
	// the build recorded none), GoVersion the toolchain's.
	Version, Revision, GoVersion string
}

// NewRegistry returns a registry holding every series of the server.
// It panics if two collectors claim one name (a programming error).
func NewRegistry(src Sources) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(src.Engine, src.API, src.Plugins),
		buildInfo(src.Build),
	)
	r.MustRegister(src.API.Collectors()...)
	if src.Journal != nil {
		r.MustRegister(storage(src.Engine, src.Journal)...)
	}
	return r
}

// storage is the durable server's families: the journal's fsyncs, and
// the storage state as one gauge per state, 1 for the current one (the
// convention for an enum), so an alert can fire on
// varwatch_storage_state{state="degraded"} == 1.
func storage(eng *engine.Engine, j Journal) []prometheus.Collector {
	cs := []prometheus.Collector{prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "varwatch_journal_fsyncs_total",
		Help: "fsyncs of the write-ahead log (with --fsync batch, one covers every write that queued meanwhile).",
	}, func() float64 { return float64(j.Fsyncs()) }), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "varwatch_journal_fsync_seconds_total",
		Help: "time spent in those fsyncs; over varwatch_journal_fsyncs_total, the mean fsync.",
	}, func() float64 { return j.FsyncTime().Seconds() })}
	for _, st := range []engine.StorageState{engine.StorageOK, engine.StorageDegraded, engine.StorageBroken} {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "varwatch_storage_state",
			Help:        "1 for the data directory's state: ok, degraded (writes fail UNAVAILABLE, reads and watches go on) or broken (restart to recover).",
			ConstLabels: prometheus.Labels{"state": st.String()},
		}, func() float64 {
			if eng.StorageState() == st {
				return 1
			}
			return 0
		}))
	}
	return cs
}

// Handler answers scrapes of r. A collector that fails (none of ours
// can) leaves the rest of the answer standing.
func Handler(r *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(r, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// buildInfo is the constant varwatch_build_info{version,revision,goversion} 1,
// the convention for joining a build's labels onto other series.
func buildInfo(b BuildInfo) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "varwatch_build_info",
		Help:        "Always 1; its labels say which build is running (as varwatch version prints).",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}
