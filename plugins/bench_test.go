package plugins

import (
	"context"
	"fmt"
	"math"
	"testing"
)

// Benchmarks of the ABI round trip (design §7: pass-through <= 50 ns per
// update at batch >= 32 without a deadline, <= 250 ns with one), next to a
// native Go filter doing the same work, in one run:
//
//	go test -run '^$' -bench . -benchmem ./plugins/
//
// wat is the WAT pass-through: the host's cost alone (encode, copy into
// guest memory, call, decode the verdicts), which is what the target is
// about. gosdk adds the Go SDK's decoding inside the guest; deadband is a
// real filter. Each reports ns/update.

func benchBatch(n int) []Update {
	batch := make([]Update, n)
	for i := range batch {
		batch[i] = Update{Kind: KindValueChange, Revision: int64(i + 1), Time: 1_700_000_000_000_000_000,
			ID: fmt.Sprintf("v%03d", i%50), Name: fmt.Sprintf("sensor.%03d", i%50), Type: TypeFloat,
			New: Float(float64(i)), Old: Float(float64(i) - 0.5), Source: "bench",
			Metadata: Metadata{{Key: "unit", Value: "C"}}}
	}
	return batch
}

var benchSizes = []int{1, 32, 256}

func perUpdate(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/update")
}

// benchChain loads one plugin twice, with the default deadline and
// without, and returns a chain for each.
func benchChains(b *testing.B, cfg PluginConfig, params map[string]string) map[string]*Chain {
	on, off := cfg, cfg
	on.Name, off.Name, off.Timeout = "on", "off", NoTimeout
	m, _ := newManager(b, Config{Plugins: []PluginConfig{on, off}})
	return map[string]*Chain{
		"on":  acquire(b, m, FilterSpec{Name: "on", Params: params}),
		"off": acquire(b, m, FilterSpec{Name: "off", Params: params}),
	}
}

func benchRun(b *testing.B, c *Chain, n int) {
	batch := benchBatch(n)
	ctx := context.Background()
	var out []Verdict
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var err error
		if out, err = c.Run(ctx, batch, out); err != nil {
			b.Fatal(err)
		}
	}
	perUpdate(b, n)
}

// nativeRun runs filter over the batch the way the SDK does in the guest:
// one call per update, verdicts into a reused slice.
func nativeRun(b *testing.B, n int, filter func(*Update) Verdict) {
	batch := benchBatch(n)
	out := make([]Verdict, n)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range batch {
			out[i] = filter(&batch[i])
		}
	}
	perUpdate(b, n)
}

func BenchmarkPassThrough(b *testing.B) {
	wat := benchChains(b, PluginConfig{Wasm: fixture(b, "passthrough")}, nil)
	gosdk := benchChains(b, PluginConfig{Path: examplePath(b, "goprobe")}, nil)
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("native/batch=%d", n), func(b *testing.B) {
			nativeRun(b, n, func(*Update) Verdict { return Verdict{} })
		})
		for _, dl := range []string{"off", "on"} {
			b.Run(fmt.Sprintf("wat/batch=%d/deadline=%s", n, dl), func(b *testing.B) { benchRun(b, wat[dl], n) })
			b.Run(fmt.Sprintf("gosdk/batch=%d/deadline=%s", n, dl), func(b *testing.B) { benchRun(b, gosdk[dl], n) })
		}
	}
}

func BenchmarkDeadband(b *testing.B) {
	wasm := benchChains(b, PluginConfig{Path: examplePath(b, "deadband")}, map[string]string{"threshold": "0.75"})
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("native/batch=%d", n), func(b *testing.B) {
			last := map[string]float64{}
			nativeRun(b, n, func(u *Update) Verdict {
				if prev, ok := last[u.ID]; ok && math.Abs(u.New.Float-prev) < 0.75 {
					return Verdict{Action: Drop}
				}
				last[u.ID] = u.New.Float
				return Verdict{}
			})
		})
		for _, dl := range []string{"off", "on"} {
			b.Run(fmt.Sprintf("wasm/batch=%d/deadline=%s", n, dl), func(b *testing.B) { benchRun(b, wasm[dl], n) })
		}
	}
}
