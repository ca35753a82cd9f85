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
	Build   BuildInfo
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
	return r
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
