package plugins

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPassthroughWAT(t *testing.T) {
	m, _ := newManager(t, Config{Plugins: []PluginConfig{{Name: "pass", Wasm: fixture(t, "passthrough")}}})
	c := acquire(t, m, FilterSpec{Name: "pass"})
	for _, n := range []int{1, 3, 1000} { // 1000 outgrows the first input buffer
		batch := make([]Update, n)
		for i := range batch {
			batch[i] = change("v", 0, float64(i))
		}
		vs := mustRun(t, c, batch)
		if got := actions(vs); got != strings.Repeat("p", n) {
			t.Fatalf("batch of %d: %s", n, got)
		}
	}
	s := statsOf(t, m, "pass")
	if s.In != 1004 || s.Passed != 1004 || s.ErrorTotal() != 0 || s.Restarts != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestInitializeRuns(t *testing.T) {
	// faulty traps in varwatch_filter unless its _initialize ran.
	m, _ := newManager(t, Config{Plugins: []PluginConfig{{Name: "f", Wasm: fixture(t, "faulty"), OnError: OnErrorClose}}})
	c := acquire(t, m, FilterSpec{Name: "f"})
	if got := actions(mustRun(t, c, []Update{change("a", 0, 1)})); got != "p" {
		t.Fatalf("verdicts %s", got)
	}
}

func TestLoadRejects(t *testing.T) {
	cases := []struct {
		name string
		cfg  PluginConfig
		want string
	}{
		{"wrong abi version", PluginConfig{Name: "x", Wasm: fixture(t, "badversion")}, "ABI version 2"},
		{"missing export", PluginConfig{Name: "x", Wasm: fixture(t, "nofilter")}, "missing export varwatch_filter"},
		{"not wasm", PluginConfig{Name: "x", Wasm: []byte("hello")}, "filter x"},
		{"no such file", PluginConfig{Name: "x", Path: "testdata/none.wasm"}, "no such file"},
		{"params without init", PluginConfig{Name: "x", Wasm: fixture(t, "passthrough"), Params: map[string]string{"a": "1"}}, "takes none"},
		{"bad name", PluginConfig{Name: "a,b", Wasm: fixture(t, "passthrough")}, "filter name"},
		{"memory limit below module minimum", PluginConfig{Name: "x", Path: examplePath(t, "deadband"), MemoryLimitPages: 8,
			Params: map[string]string{"threshold": "1"}}, "filter x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(context.Background(), Config{CacheDir: cacheDir, Plugins: []PluginConfig{tc.cfg}})
			if err == nil {
				_ = m.Close(context.Background())
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	t.Run("duplicate name", func(t *testing.T) {
		p := PluginConfig{Name: "x", Wasm: fixture(t, "passthrough")}
		if _, err := New(context.Background(), Config{Plugins: []PluginConfig{p, p}}); err == nil {
			t.Fatal("loaded")
		}
	})
	t.Run("unknown default filter", func(t *testing.T) {
		_, err := New(context.Background(), Config{Default: []FilterSpec{{Name: "nope"}}})
		var fe *FilterError
		if !errors.As(err, &fe) || !errors.Is(err, ErrUnknownFilter) || fe.Index != -1 {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad default params", func(t *testing.T) {
		_, err := New(context.Background(), Config{
			CacheDir: cacheDir,
			Plugins:  []PluginConfig{{Name: "deadband", Path: examplePath(t, "deadband"), Params: map[string]string{"threshold": "-1"}}},
			Default:  []FilterSpec{{Name: "deadband"}},
		})
		var fe *FilterError
		if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidParams) || fe.Index != -1 || !strings.Contains(err.Error(), "threshold must be") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestAcquireValidation(t *testing.T) {
	m, _ := newManager(t, Config{Plugins: []PluginConfig{
		{Name: "pass", Wasm: fixture(t, "passthrough")},
		{Name: "deadband", Path: examplePath(t, "deadband"), Params: map[string]string{"threshold": "1"}},
	}})
	cases := []struct {
		name      string
		specs     []FilterSpec
		sentinel  error
		index     int
		inMessage string
	}{
		{"unknown filter", []FilterSpec{{Name: "pass"}, {Name: "nope"}}, ErrUnknownFilter, 1, "deadband pass"},
		{"host option as param", []FilterSpec{{Name: "deadband", Params: map[string]string{"timeout": "0"}}}, ErrInvalidParams, 0, "server option"},
		{"refused value", []FilterSpec{{Name: "pass"}, {Name: "deadband", Params: map[string]string{"threshold": "abc"}}}, ErrInvalidParams, 1, "not a number"},
		{"unknown param", []FilterSpec{{Name: "deadband", Params: map[string]string{"treshold": "2"}}}, ErrInvalidParams, 0, `unknown param "treshold"`},
		{"params for a plugin without init", []FilterSpec{{Name: "pass", Params: map[string]string{"a": "b"}}}, ErrInvalidParams, 0, "takes no params"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := m.Acquire(context.Background(), tc.specs)
			var fe *FilterError
			if !errors.As(err, &fe) || !errors.Is(err, tc.sentinel) {
				c.Release()
				t.Fatalf("err = %v, want a FilterError wrapping %v", err, tc.sentinel)
			}
			if fe.Index != tc.index || !strings.Contains(err.Error(), tc.inMessage) {
				t.Fatalf("err = %q (index %d), want index %d and %q", err, fe.Index, tc.index, tc.inMessage)
			}
		})
	}
	if n := len(m.chains); n != 0 {
		t.Fatalf("%d chains left behind by failed acquires", n)
	}
}

func TestDefaultChainAndEmptyChain(t *testing.T) {
	m, _ := newManager(t, Config{Plugins: []PluginConfig{{Name: "pass", Wasm: fixture(t, "passthrough")}}})
	c, err := m.Acquire(context.Background(), nil)
	if err != nil || c != nil {
		t.Fatalf("empty request without default: %v %v", c, err)
	}
	vs, err := c.Run(context.Background(), []Update{change("a", 0, 1)}, nil)
	if err != nil || actions(vs) != "p" {
		t.Fatalf("nil chain: %v %v", actions(vs), err)
	}
	c.Release() // no-op

	md, _ := newManager(t, Config{
		Plugins: []PluginConfig{{Name: "pass", Wasm: fixture(t, "passthrough")}},
		Default: []FilterSpec{{Name: "pass"}},
	})
	c = acquire(t, md)
	if c.Name() != "pass" {
		t.Fatalf("default chain is %q", c.Name())
	}
	c2 := acquire(t, md, FilterSpec{Name: "pass"})
	if c2.Name() != "pass|pass" {
		t.Fatalf("default plus requested is %q", c2.Name())
	}
	mustRun(t, c2, []Update{change("a", 0, 1)})
	if s := statsOf(t, md, "pass"); s.In != 2 {
		t.Fatalf("update ran through %d pass stages, want 2", s.In)
	}
	_, err = md.Acquire(context.Background(), []FilterSpec{{Name: "nope"}})
	var fe *FilterError
	if !errors.As(err, &fe) || fe.Index != 0 {
		t.Fatalf("index of a bad requested filter must not count the default chain: %v", err)
	}
}

func TestChainsAreShared(t *testing.T) {
	m, _ := newManager(t, Config{Plugins: []PluginConfig{
		{Name: "scale", Path: examplePath(t, "scale")},
		{Name: "pass", Wasm: fixture(t, "passthrough")},
	}})
	ctx := context.Background()
	spec := func(params map[string]string) []FilterSpec {
		return []FilterSpec{{Name: "scale", Params: params}, {Name: "pass"}}
	}
	a, err := m.Acquire(ctx, spec(map[string]string{"a": "2", "b": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Acquire(ctx, spec(map[string]string{"b": "1", "a": "2"}))
	if err != nil {
		t.Fatal(err)
	}
	other, err := m.Acquire(ctx, spec(map[string]string{"a": "3"}))
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a == other {
		t.Fatalf("same filters and params must share one chain, others must not: a=%p b=%p other=%p", a, b, other)
	}
	mustRun(t, a, []Update{change("x", 0, 1), change("x", 1, 2)})
	if s := statsOf(t, m, "scale"); s.In != 2 || s.Replaced != 2 {
		t.Fatalf("one run for two sharers counts each update once: %+v", s)
	}
	a.Release()
	mustRun(t, b, []Update{change("x", 0, 1)}) // b still holds it
	b.Release()
	if _, err := b.Run(ctx, []Update{change("x", 0, 1)}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("run after the last release: %v", err)
	}
	other.Release()
	if n := len(m.chains); n != 0 {
		t.Fatalf("%d chains left after releasing all", n)
	}
}

func TestReplacementsReachLaterStagesAndCompose(t *testing.T) {
	m, _ := newManager(t, Config{Plugins: []PluginConfig{{Name: "scale", Path: examplePath(t, "scale")}}})
	c := acquire(t, m,
		FilterSpec{Name: "scale", Params: map[string]string{"a": "2", "unit": "half-units"}},
		FilterSpec{Name: "scale", Params: map[string]string{"b": "1"}})
	in := change("x", 3, 5)
	in.Metadata = Metadata{{Key: "unit", Value: "units"}, {Key: "k", Value: "v"}}
	vs := mustRun(t, c, []Update{in})
	got := Apply(in, vs[0])
	if got.New.Float != 11 || got.Old.Float != 7 {
		t.Fatalf("2x then +1: new %v old %v, want 11 and 7", got.New, got.Old)
	}
	if u, _ := got.Metadata.Get("unit"); u != "half-units" || len(got.Metadata) != 2 {
		t.Fatalf("metadata %v", got.Metadata)
	}
}

func TestCallerContextEndIsNoFault(t *testing.T) {
	m, _ := newManager(t, Config{Plugins: []PluginConfig{{Name: "f", Wasm: fixture(t, "faulty"), Timeout: time.Hour}}})
	c := acquire(t, m, FilterSpec{Name: "f"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.Run(ctx, []Update{change("x", 0, -2)}, nil) // endless loop
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the caller's deadline", err)
	}
	if s := statsOf(t, m, "f"); s.ErrorTotal() != 0 {
		t.Fatalf("the caller giving up was counted as a plugin fault: %+v", s)
	}
	if got := actions(mustRun(t, c, []Update{change("x", 0, 1)})); got != "p" {
		t.Fatalf("after the caller gave up, the chain must work again: %s", got)
	}
}

// TestPerCallContexts runs batches each under its own context, canceled
// right after the batch as callers do with defer cancel(): the reused
// per-batch deadline must not carry an old cancellation into a new batch.
func TestPerCallContexts(t *testing.T) {
	m, _ := newManager(t, Config{Plugins: []PluginConfig{{Name: "pass", Wasm: fixture(t, "passthrough")}}})
	c := acquire(t, m, FilterSpec{Name: "pass"})
	for i := range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		vs, err := c.Run(ctx, []Update{change("x", 0, 1)}, nil)
		cancel()
		if err != nil || actions(vs) != "p" {
			t.Fatalf("batch %d: %s %v", i, actions(vs), err)
		}
	}
	if s := statsOf(t, m, "pass"); s.ErrorTotal() != 0 || s.Restarts != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDefaultChainRejectsHostOptions(t *testing.T) {
	_, err := New(context.Background(), Config{CacheDir: cacheDir,
		Plugins: []PluginConfig{{Name: "scale", Path: examplePath(t, "scale")}},
		Default: []FilterSpec{{Name: "scale", Params: map[string]string{"on_error": "pass"}}},
	})
	var fe *FilterError
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidParams) || fe.Index != -1 {
		t.Fatalf("err = %v", err)
	}
}
