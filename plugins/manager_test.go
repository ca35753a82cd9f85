package plugins

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// scaleConfig is the scale example with param a, then extra, with calm
// deadlines: tests Reload it, and a reload's first batch instantiates a Go
// module, which a loaded machine can stretch past the 100ms default.
func scaleConfig(t *testing.T, a string, extra ...PluginConfig) Config {
	return calmed(Config{Plugins: append([]PluginConfig{{Name: "scale", Path: examplePath(t, "scale"), Params: map[string]string{"a": a}}}, extra...)})
}

func scaled(t *testing.T, c *Chain) float64 {
	t.Helper()
	vs := mustRun(t, c, []Update{change("x", 0, 1)})
	if vs[0].Action != Replace {
		t.Fatalf("scale did not replace: %s", vs[0].Action)
	}
	return vs[0].New.Float
}

func TestReload(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, scaleConfig(t, "2"))
	c := acquire(t, m, FilterSpec{Name: "scale"})
	if got := scaled(t, c); got != 2 {
		t.Fatalf("before reload: %v", got)
	}
	if err := m.Reload(ctx, scaleConfig(t, "3")); err != nil {
		t.Fatal(err)
	}
	if got := scaled(t, c); got != 3 {
		t.Fatalf("the live chain must move to the reloaded plugin: %v", got)
	}

	failures := []struct {
		name string
		cfg  Config
		want string
	}{
		{"a plugin does not load", scaleConfig(t, "4", PluginConfig{Name: "bad", Wasm: fixture(t, "badversion")}), "ABI version"},
		{"a filter in use is gone", Config{}, "unknown filter"},
		{"new defaults refused for a live chain", scaleConfig(t, "x"), "not a number"},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			err := m.Reload(ctx, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if got := scaled(t, c); got != 3 {
				t.Fatalf("a failed reload must keep the old plugins: %v", got)
			}
			if fresh := acquire(t, m, FilterSpec{Name: "scale", Params: map[string]string{"b": "1"}}); scaled(t, fresh) != 4 {
				t.Fatalf("new chains must use the old plugins too")
			}
		})
	}
	if s := statsOf(t, m, "scale"); s.In != s.Replaced || s.In < 5 {
		t.Fatalf("counters must survive reloads: %+v", s)
	}
}

// TestConcurrentUse runs chains from many goroutines while others acquire,
// release, read stats and reload. Run with -race. Every batch must come
// back whole and scaled by one of the two configured factors.
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, scaleConfig(t, "2", PluginConfig{Name: "pass", Wasm: fixture(t, "passthrough")}))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			specs := []FilterSpec{{Name: "pass"}, {Name: "scale", Params: map[string]string{"b": fmt.Sprint(w % 2)}}}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := m.Acquire(ctx, specs)
				if err != nil {
					errs <- err
					return
				}
				batch := []Update{change("a", 0, 1), change("b", 0, 10)}
				vs, err := c.Run(ctx, batch, nil)
				c.Release()
				if err != nil {
					errs <- err
					return
				}
				b := float64(w % 2)
				for j, v := range vs {
					x := batch[j].New.Float
					if v.Action != Replace || (v.New.Float != 2*x+b && v.New.Float != 3*x+b) {
						errs <- fmt.Errorf("worker %d: update %d: %s %v", w, j, v.Action, v.New)
						return
					}
				}
				_ = m.Stats()
			}
		}()
	}
	for i := range 4 {
		if err := m.Reload(ctx, scaleConfig(t, fmt.Sprint(2+i%2), PluginConfig{Name: "pass", Wasm: fixture(t, "passthrough")})); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCloseEndsEverythingAndLeaksNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx := context.Background()
	m, err := New(ctx, Config{CacheDir: cacheDir, Plugins: []PluginConfig{
		{Name: "pass", Wasm: fixture(t, "passthrough"), Timeout: time.Second},
		{Name: "f", Wasm: fixture(t, "faulty"), Timeout: 20 * time.Millisecond},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Acquire(ctx, []FilterSpec{{Name: "pass"}, {Name: "f"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []float64{1, -2, 1} { // a timeout in the middle
		if _, err := c.Run(ctx, []Update{change("x", 0, v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := c.Run(ctx, []Update{change("x", 0, 1)}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("run after close: %v", err)
	}
	c.Release()
	if _, err := m.Acquire(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("acquire after close: %v", err)
	}
	if err := m.Reload(ctx, Config{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("reload after close: %v", err)
	}
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestStatsAndLogs(t *testing.T) {
	m, logs := newManager(t, Config{Plugins: []PluginConfig{
		{Name: "probe", Path: examplePath(t, "goprobe")},
		{Name: "deadband", Path: examplePath(t, "deadband")},
	}})
	c := acquire(t, m, FilterSpec{Name: "probe"}, FilterSpec{Name: "deadband", Params: map[string]string{"threshold": "1"}})
	mustRun(t, c, []Update{stringChange("s", "print"), change("x", 0, 1), change("x", 1, 1.5), change("x", 1.5, 3)})
	got := map[string]Stats{}
	for _, s := range m.Stats() {
		got[s.Name] = s
	}
	if s := got["probe"]; s.In != 4 || s.Passed != 4 {
		t.Fatalf("probe %+v", s)
	}
	if s := got["deadband"]; s.In != 4 || s.Passed != 3 || s.Dropped != 1 || s.Replaced != 0 {
		t.Fatalf("deadband %+v", s)
	}
	m.LogStats()
	for _, want := range []string{
		`plugins.probe: guest output: line="goprobe: hello on stdout"`,
		`plugins.probe: guest output: line="goprobe: hello on stderr"`,
		"filter stats: filter=deadband in=4 passed=3 dropped=1 replaced=0 restarts=0",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestCacheDir(t *testing.T) {
	dir := t.TempDir()
	for range 2 { // the second start reads what the first wrote
		m, err := New(context.Background(), Config{CacheDir: dir, Plugins: []PluginConfig{{Name: "pass", Wasm: fixture(t, "passthrough")}}})
		if err != nil {
			t.Fatal(err)
		}
		_ = m.Close(context.Background())
	}
	var files int
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			files++
		}
		return nil
	})
	if files == 0 {
		t.Fatal("nothing cached")
	}
}

// TestFixturesFresh checks the committed .wasm fixtures against their .wat
// sources (go generate ./plugins/ rebuilds them).
func TestFixturesFresh(t *testing.T) {
	if why := needTools("wat2wasm"); why != "" {
		t.Skip(why)
	}
	srcs, _ := filepath.Glob(filepath.Join("testdata", "*.wat"))
	for _, src := range srcs {
		out := filepath.Join(t.TempDir(), "x.wasm")
		if b, err := exec.Command("wat2wasm", src, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", src, err, b)
		}
		want, _ := os.ReadFile(out)
		got, _ := os.ReadFile(strings.TrimSuffix(src, ".wat") + ".wasm")
		if string(got) != string(want) {
			t.Errorf("%s is stale: run go generate ./plugins/", src)
		}
	}
}
