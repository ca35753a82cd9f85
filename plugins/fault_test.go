package plugins

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultCase is a plugin that fails in a known way on a trigger update.
type faultCase struct {
	name    string
	cfg     func(t *testing.T) PluginConfig
	trigger Update
	kind    FaultKind
	// inError is text the close policy's error must carry.
	inError string
}

func faultyWAT(timeout time.Duration, pages uint32) func(t *testing.T) PluginConfig {
	return func(t *testing.T) PluginConfig {
		return PluginConfig{Wasm: fixture(t, "faulty"), Timeout: timeout, MemoryLimitPages: pages}
	}
}

func goProbe(pages uint32, timeout time.Duration) func(t *testing.T) PluginConfig {
	return func(t *testing.T) PluginConfig {
		return PluginConfig{Path: examplePath(t, "goprobe"), MemoryLimitPages: pages, Timeout: timeout}
	}
}

func stringChange(id, s string) Update {
	return Update{Kind: KindValueChange, ID: id, Name: id, Type: TypeString, New: String(s)}
}

var faultCases = []faultCase{
	{"trap", faultyWAT(calm, 0), change("x", 0, -1), FaultTrap, "unreachable"},
	{"endless loop", faultyWAT(20*time.Millisecond, 0), change("x", 0, -2), FaultTimeout, "deadline"},
	{"memory bomb", faultyWAT(calm, 256), change("x", 0, -3), FaultMemory, "unreachable"},
	{"garbage count", faultyWAT(calm, 0), change("x", 0, -4), FaultMalformed, "3 verdicts for 2 updates"},
	{"garbage pointer", faultyWAT(calm, 0), change("x", 0, -5), FaultMalformed, "outside memory"},
	{"garbage action", faultyWAT(calm, 0), change("x", 0, -6), FaultMalformed, "unknown action"},
	{"no output", faultyWAT(calm, 0), change("x", 0, -7), FaultMalformed, "no output"},
	{"exit", faultyWAT(calm, 0), change("x", 0, -8), FaultExit, "exit_code(3)"},
	{"go panic", goProbe(0, calm), stringChange("x", "panic"), FaultPanic, "panic: goprobe: asked to panic"},
	// The Go runtime works hard before it gives up: a long deadline.
	{"go out of memory", goProbe(512, calm), stringChange("x", "oom"), FaultMemory, "fatal error: out of memory"},
}

// TestFaultsAreContained runs every bad plugin under every policy: the
// batch gets the policy, the error is counted by kind, the next batch runs
// on a re-created instance, and a chain of another plugin is unaffected.
func TestFaultsAreContained(t *testing.T) {
	for _, fc := range faultCases {
		for _, policy := range []Policy{OnErrorPass, OnErrorDrop, OnErrorClose} {
			t.Run(fc.name+"/"+policy.String(), func(t *testing.T) {
				bad := fc.cfg(t)
				bad.Name, bad.OnError = "bad", policy
				m, logs := newManager(t, Config{Plugins: []PluginConfig{bad, {Name: "good", Wasm: fixture(t, "passthrough")}}})
				c := acquire(t, m, FilterSpec{Name: "bad"})
				good := acquire(t, m, FilterSpec{Name: "good"})

				vs, err := run(t, c, []Update{fc.trigger, change("y", 0, 1)})
				switch policy {
				case OnErrorPass, OnErrorDrop:
					want := map[Policy]string{OnErrorPass: "pp", OnErrorDrop: "dd"}[policy]
					if err != nil || actions(vs) != want {
						t.Fatalf("faulted batch: %s, %v; want %s", actions(vs), err, want)
					}
				case OnErrorClose:
					var fe *FaultError
					if !errors.As(err, &fe) || !errors.Is(err, ErrFilterFailed) || fe.Kind != fc.kind || fe.Plugin != "bad" {
						t.Fatalf("err = %v, want a %s FaultError", err, fc.kind)
					}
					if !strings.Contains(err.Error(), fc.inError) {
						t.Fatalf("err = %q, want it to mention %q", err, fc.inError)
					}
				}
				s := statsOf(t, m, "bad")
				if s.Errors[fc.kind.String()] != 1 || s.ErrorTotal() != 1 {
					t.Fatalf("errors %v, want one %s", s.Errors, fc.kind)
				}

				if got := actions(mustRun(t, c, []Update{change("z", 0, 1)})); got != "p" {
					t.Fatalf("batch after the fault: %s", got)
				}
				s = statsOf(t, m, "bad")
				if s.Restarts != 1 || s.In != 3 || s.In != s.Passed+s.Dropped+s.Replaced {
					t.Fatalf("stats after restart %+v", s)
				}
				if got := actions(mustRun(t, good, []Update{change("g", 0, 1)})); got != "p" {
					t.Fatalf("other chain: %s", got)
				}
				if !strings.Contains(logs.String(), "filter failed") || !strings.Contains(logs.String(), "kind="+fc.kind.String()) {
					t.Fatalf("fault not logged:\n%s", logs)
				}
			})
		}
	}
}

// TestStuckChainDoesNotBlockOthers holds one chain in an endless loop (no
// deadline reached yet) while other chains run, new chains are acquired and
// stats are read.
func TestStuckChainDoesNotBlockOthers(t *testing.T) {
	m, _ := newManager(t, Config{Plugins: []PluginConfig{
		{Name: "bad", Wasm: fixture(t, "faulty"), Timeout: time.Hour},
		{Name: "good", Wasm: fixture(t, "passthrough")},
	}})
	bad := acquire(t, m, FilterSpec{Name: "bad"})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = bad.Run(ctx, []Update{change("x", 0, -2)}, nil)
	}()
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, "the bad chain to be running", func() bool {
		if bad.mu.TryLock() {
			bad.mu.Unlock()
			return false
		}
		return true
	})

	good := acquire(t, m, FilterSpec{Name: "good"})
	for range 10 {
		if got := actions(mustRun(t, good, []Update{change("g", 0, 1)})); got != "p" {
			t.Fatalf("good chain: %s", got)
		}
	}
	acquire(t, m, FilterSpec{Name: "good"}, FilterSpec{Name: "good"})
	_ = m.Stats()
}

func TestRestartBackoff(t *testing.T) {
	// With an hour of backoff, the second consecutive fault leaves the
	// stage down: batches get the policy without running the plugin.
	m, _ := newManager(t, Config{
		Plugins:        []PluginConfig{{Name: "bad", Wasm: fixture(t, "faulty"), OnError: OnErrorDrop}},
		RestartBackoff: time.Hour,
	})
	c := acquire(t, m, FilterSpec{Name: "bad"})
	for i, want := range []struct {
		actions  string
		restarts uint64
	}{
		{"d", 0}, // trap
		{"d", 1}, // re-created at once, traps again
		{"d", 1}, // down: an hour to wait
		{"d", 1},
	} {
		if got := actions(mustRun(t, c, []Update{change("x", 0, -1)})); got != want.actions {
			t.Fatalf("batch %d: %s", i, got)
		}
		if s := statsOf(t, m, "bad"); s.Restarts != want.restarts {
			t.Fatalf("batch %d: restarts %d, want %d", i, s.Restarts, want.restarts)
		}
	}
	s := statsOf(t, m, "bad")
	if s.Errors["trap"] != 2 || s.Errors["unavailable"] != 2 {
		t.Fatalf("errors %v", s.Errors)
	}
	// Backoff doubles per consecutive fault and stops at the limit.
	for n, want := range map[int]time.Duration{1: 0, 2: time.Second, 3: 2 * time.Second, 4: 4 * time.Second, 10: 5 * time.Second} {
		if got := backoff(n, time.Second, 5*time.Second); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

// waitFor polls cond until it holds, failing the test after a timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
