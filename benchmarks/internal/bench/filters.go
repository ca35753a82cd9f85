package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/varwatch/varwatch/plugins"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// filters: the delivery scenario (batched streams) through a Wasm filter
// chain, against no chain in the same run. The pass-through is
// plugins/testdata/passthrough.wasm (the ABI's smallest plugin, WAT); the
// deadband is plugins/examples/deadband (Go SDK), built here. Values are
// written as multiples of 0.25 with threshold 1, so the deadband passes
// exactly every fourth write of each variable, and the checker expects
// exactly those.
func (h *harness) filters(ctx context.Context) {
	base := Row{Scenario: "filters", System: "varwatch", Unit: "updates/s", higherBetter: true}
	if h.o.Server != "" {
		base.Status, base.Note = "skipped", "needs the harness's own server (it loads the plugins)"
		h.add(base)
		return
	}
	mgr, err := h.filterHost(ctx)
	if err != nil {
		h.add(failRow(base, err))
		return
	}
	defer func() { _ = mgr.Close(ctx) }()
	t := throughputRun{streams: h.sz.deliveryStream, writers: h.sz.deliveryWriter, keys: h.sz.keys, window: h.sz.window,
		batch: 100, duration: h.sz.duration, drain: h.sz.drainTimeout}
	deadband := counterScheme(t.keys)
	deadband.step = 4
	for k := range deadband.init {
		deadband.init[k] = -3 // passes 1, 5, 9, ...
	}
	for _, c := range []struct {
		name    string
		filters []*pb.FilterSpec
		scale   float64
		scheme  scheme
		note    string
	}{
		{"no chain", nil, 1, counterScheme(t.keys), ""},
		{"passthrough (WAT)", []*pb.FilterSpec{{Name: "passthrough"}}, 1, counterScheme(t.keys), ""},
		{"deadband (Go SDK)", []*pb.FilterSpec{{Name: "deadband", Params: map[string]string{"threshold": "1"}}}, 0.25, deadband,
			"passes 1 write in 4"},
	} {
		r := base
		r.Variant = fmt.Sprintf("%dS x %dW, %s", t.streams, t.writers, c.name)
		// Each row gets its own server (sharing the filter host): chains
		// and their state start fresh.
		sys, err := newVarwatch("", vwMode{batched: true, filters: c.filters, scale: c.scale}, mgr, t.streams)
		if err != nil {
			h.add(failRow(r, err))
			continue
		}
		tt := t
		tt.so = streamOpts{scheme: c.scheme, ordered: true}
		r = throughputRow(ctx, r, tt, sys)
		sys.close()
		r.Note = c.note
		h.add(r)
	}
}

// filterHost loads passthrough and deadband (1s per-batch deadline: a
// loaded 2-core machine must not turn a slow batch into an unfiltered one).
func (h *harness) filterHost(ctx context.Context) (*plugins.Manager, error) {
	root := h.o.RepoRoot
	if root == "" {
		var err error
		if root, err = findRepoRoot(); err != nil {
			return nil, err
		}
	}
	cache := filepath.Join(root, ".cache", "bench-plugins")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	deadband := filepath.Join(cache, "deadband.wasm")
	h.logf("building %s", deadband)
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-o", deadband, "./plugins/examples/deadband")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the deadband plugin: %v\n%s", err, out)
	}
	return plugins.New(ctx, plugins.Config{
		Plugins: []plugins.PluginConfig{
			{Name: "passthrough", Path: filepath.Join(root, "plugins", "testdata", "passthrough.wasm"), Timeout: time.Second},
			{Name: "deadband", Path: deadband, Timeout: time.Second},
		},
		CacheDir: filepath.Join(cache, "wazero"),
	})
}
