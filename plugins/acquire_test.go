package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hangStart makes the first start of plugin name hang until the returned
// release is called; started is closed once it hangs. Later starts pass.
func hangStart(t *testing.T, name string) (started <-chan struct{}, release func()) {
	t.Helper()
	st, rel := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookInstantiate = func(plugin string) {
		if plugin != name {
			return
		}
		hung := false
		once.Do(func() { hung = true })
		if hung {
			close(st)
			<-rel
		}
	}
	var relOnce sync.Once
	release = func() { relOnce.Do(func() { close(rel) }) }
	t.Cleanup(func() { release(); testHookInstantiate = nil })
	return st, release
}

type acquired struct {
	c   *Chain
	err error
}

func acquireAsync(m *Manager, ctx context.Context, specs ...FilterSpec) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		c, err := m.Acquire(ctx, specs)
		ch <- acquired{c, err}
	}()
	return ch
}

// wait returns what an Acquire answered, failing the test if it does not
// answer within a generous bound (a hang is the bug being tested).
func wait(t *testing.T, ch <-chan acquired) acquired {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(time.Minute):
		t.Fatal("Acquire did not return")
		return acquired{}
	}
}

func pending(ch <-chan acquired) bool {
	select {
	case a := <-ch:
		panic("answered early: " + errString(a.err))
	default:
		return true
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestHangingStartDelaysOnlyItsChain: while one chain's plugin hangs in
// its start, a chain of another plugin is acquired and runs; callers of the
// hanging chain wait for that one start (and share its chain) or give up
// with their context. Before, Acquire started plugins with the manager's
// lock held, so every filtered watch waited behind the hanging one.
func TestHangingStartDelaysOnlyItsChain(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, scaleConfig(t, "2", PluginConfig{Name: "pass", Wasm: fixture(t, "passthrough")}))
	started, release := hangStart(t, "scale")

	first := acquireAsync(m, ctx, FilterSpec{Name: "scale"})
	<-started
	second := acquireAsync(m, ctx, FilterSpec{Name: "scale"}) // the same chain: waits for the first start
	gaveUp, cancel := context.WithCancel(ctx)
	third := acquireAsync(m, gaveUp, FilterSpec{Name: "scale"})

	other := wait(t, acquireAsync(m, ctx, FilterSpec{Name: "pass"}))
	if other.err != nil {
		t.Fatal(other.err)
	}
	if vs := mustRun(t, other.c, []Update{change("x", 0, 1)}); vs[0].Action != Pass {
		t.Fatalf("pass: %s", vs[0].Action)
	}
	other.c.Release()
	pending(first)
	pending(second)

	cancel()
	if a := wait(t, third); !errors.Is(a.err, context.Canceled) {
		t.Fatalf("a waiter whose context ended: %v, %v", a.c, a.err)
	}
	pending(first)

	release()
	a, b := wait(t, first), wait(t, second)
	if a.err != nil || b.err != nil {
		t.Fatalf("after the start returned: %v, %v", a.err, b.err)
	}
	if a.c != b.c {
		t.Fatal("two callers of one chain got two chains")
	}
	if got := scaled(t, a.c); got != 2 {
		t.Fatalf("scaled %v, want 2", got)
	}
	a.c.Release()
	b.c.Release()
}

// TestReloadDuringAHangingStart: a chain whose start is under way when the
// plugins are reloaded is started again from the new plugins, never handed
// out on the old ones; the reload closes the old plugins only once that
// start has returned.
func TestReloadDuringAHangingStart(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, scaleConfig(t, "2"))
	started, release := hangStart(t, "scale")
	first := acquireAsync(m, ctx, FilterSpec{Name: "scale"})
	<-started
	m.mu.Lock()
	old := m.gen
	m.mu.Unlock()
	reloaded := make(chan error, 1)
	go func() { reloaded <- m.Reload(ctx, scaleConfig(t, "3")) }()
	deadline := time.Now().Add(time.Minute)
	for { // until the reload has swapped the plugins (it then waits for the start)
		m.mu.Lock()
		swapped := m.gen != old
		m.mu.Unlock()
		if swapped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reload never swapped the plugins")
		}
		time.Sleep(time.Millisecond)
	}
	pending(first)
	release()
	a := wait(t, first)
	if a.err != nil {
		t.Fatal(a.err)
	}
	defer a.c.Release()
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if got := scaled(t, a.c); got != 3 {
		t.Fatalf("scaled %v after the reload, want 3 (the new plugin)", got)
	}
}

// TestAcquireStressWithSlowStarts: many callers acquire and release chains
// (some shared, some their own) while starts are slowed at random and the
// plugins are reloaded; every chain handed out must run on current-or-newer
// plugins with its own params (the model: scale's a is 2 or 3, b the
// worker's), and nothing may stay behind once all are released.
func TestAcquireStressWithSlowStarts(t *testing.T) {
	ctx := context.Background()
	// An hour per batch: under -race on a loaded machine a batch can pass
	// the 10s test deadline (a timeout fault passes the update unscaled),
	// and deadlines are not what this test is about.
	cfg := func(a string) Config {
		c := scaleConfig(t, a)
		c.Plugins[0].Timeout = time.Hour
		return c
	}
	m, logs := newManager(t, cfg("2"))
	defer func() {
		if t.Failed() {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "WARN") || strings.Contains(l, "ERROR") {
					t.Log(l)
				}
			}
		}
	}()
	var seed atomic.Uint64
	seed.Store(uint64(time.Now().UnixNano()))
	t.Logf("seed %d", seed.Load())
	testHookInstantiate = func(string) {
		if n := seed.Add(0x9e3779b97f4a7c15); n%3 == 0 {
			time.Sleep(time.Duration(n%2000) * time.Microsecond) // widen the window between start and publish
		}
	}
	t.Cleanup(func() { testHookInstantiate = nil })

	stop := make(chan struct{})
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := float64(w % 3) // workers share three distinct chains
			specs := []FilterSpec{{Name: "scale", Params: map[string]string{"b": fmt.Sprint(b)}}}
			for {
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
				vs, err := c.Run(ctx, []Update{change("x", 0, 10)}, nil)
				c.Release()
				if err != nil {
					errs <- err
					return
				}
				if got := vs[0].New; vs[0].Action != Replace || (got.Float != 20+b && got.Float != 30+b) {
					errs <- fmt.Errorf("worker %d: %s %v, want 2*10+%v or 3*10+%v", w, vs[0].Action, got, b, b)
					return
				}
			}
		}()
	}
	for i := range 6 {
		if err := m.Reload(ctx, cfg(fmt.Sprint(2+i%2))); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.chains) != 0 || len(m.building) != 0 {
		t.Errorf("after every release: %d chains, %d being built", len(m.chains), len(m.building))
	}
}
