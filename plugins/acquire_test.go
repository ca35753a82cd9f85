package plugins

import (
	"context"
	"errors"
	"sync"
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
