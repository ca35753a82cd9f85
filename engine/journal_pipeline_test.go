package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedEngine opens a durable engine over a memJournal whose appends wait
// for the test, with a session "s" holding x = 1 and y0... = 0, and a
// watcher of x.
func gatedEngine(t *testing.T, others int) (*Engine, *memJournal, *Subscription, *atomic.Int64) {
	t.Helper()
	var committed atomic.Int64
	testHookCommitted = func(n int) { committed.Add(int64(n)) }
	t.Cleanup(func() { testHookCommitted = nil })
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{}
	e, err := Open(journalConfig(clock, mj))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx := context.Background()
	if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeInteger, Value: Integer(1)}); err != nil {
		t.Fatal(err)
	}
	for i := range others {
		if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: fmt.Sprint("y", i), Type: TypeInteger, Value: Integer(0)}); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	// From here every append waits for the test. The engine is idle, so
	// the journal is not in use while the fields change.
	mj.mu.Lock()
	mj.gate, mj.entered = make(chan struct{}), make(chan struct{}, 100)
	mj.appends = 0
	mj.mu.Unlock()
	committed.Store(0)
	return e, mj, sub, &committed
}

// While a cycle's append is on its way to the disk, the loop goes on
// applying the next cycles, but nobody sees anything of them: not a
// writer's reply, not a read, not a watcher, not a new watch's snapshot.
// Once the disk has it, one append covers every cycle that queued behind
// the first (group commit across cycles), and all of it shows at once.
func TestNothingIsSeenBeforeItIsDurable(t *testing.T) {
	const others = 5
	e, mj, sub, committed := gatedEngine(t, others)
	ctx := context.Background()

	var wg sync.WaitGroup
	results := make(chan error, others+3)
	set := func(name string, v int64) {
		wg.Go(func() {
			_, err := e.Set(ctx, SetRequest{Session: "s", Variable: name, Value: Integer(v)})
			results <- err
		})
	}
	set("x", 2)
	<-mj.entered // the first append is on its way
	for i := range others {
		set(fmt.Sprint("y", i), 1)
	}
	waitFor(t, "the loop to apply the sets while the first append waits", func() bool {
		return committed.Load() == 1+others
	})
	var got *Variable
	wg.Go(func() {
		v, err := e.Get(ctx, "s", "x")
		got = v
		results <- err
	})
	var snap *Subscription
	wg.Go(func() {
		w, err := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"x"}, IncludeInitialValues: true})
		snap = w
		results <- err
	})
	waitFor(t, "the loop to apply the read and the watch too", func() bool {
		return committed.Load() == 1+others+2
	})
	select {
	case err := <-results:
		t.Fatalf("a call was answered before its cycle was durable (err %v)", err)
	default:
	}
	if n := sub.Pending(); n != 0 {
		t.Fatalf("the watcher has %d events before they are durable", n)
	}

	close(mj.gate) // let every append through
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Fatal(err)
		}
	}
	mj.mu.Lock()
	appends := mj.appends
	mj.mu.Unlock()
	if appends != 2 {
		t.Errorf("%d appends for the first set and the cycles queued behind it, want 2", appends)
	}
	if got.Value.Integer() != 2 {
		t.Errorf("the read returned x = %d, want 2", got.Value.Integer())
	}
	if ev := nextEvent(t, snap); ev.Type != EventInitialValue || ev.Variable.Value.Integer() != 2 {
		t.Errorf("the new watch's snapshot starts with %+v, want x = 2", ev)
	}
	snap.Close()
	if ev := nextEvent(t, sub); ev.Type != EventValueChange || ev.Variable.Value.Integer() != 2 {
		t.Fatalf("the watcher got %+v, want x = 2", ev)
	}
}

// An append that fails takes every cycle in flight with it: they are
// applied on top of it, so none of them is acknowledged or seen, and the
// state goes back to what the journal holds. Writes come back with the
// disk, revisions continuing from the last durable one.
func TestFailedAppendFailsEveryCycleInFlight(t *testing.T) {
	e, mj, sub, committed := gatedEngine(t, 0)
	ctx := context.Background()
	before, err := e.Get(ctx, "s", "x")
	if err != nil {
		t.Fatal(err)
	}
	const sets = 10
	var wg sync.WaitGroup
	errs := make(chan error, sets+2)
	for i := range sets + 1 {
		wg.Go(func() {
			_, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(2 + i))})
			errs <- err
		})
		if i == 0 {
			<-mj.entered
		}
	}
	wg.Go(func() {
		_, err := e.Get(ctx, "s", "x")
		errs <- err
	})
	waitFor(t, "the loop to apply every command", func() bool { return committed.Load() == sets+2 })
	mj.mu.Lock()
	mj.failAppend = errors.New("disk full")
	mj.mu.Unlock()
	close(mj.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("a command of a cycle in flight got %v, want ErrUnavailable", err)
		}
	}
	endsUnseen(t, sub)
	if v, err := e.Get(ctx, "s", "x"); err != nil || v.Value.Integer() != 1 || v.ModRevision != before.ModRevision {
		t.Fatalf("after the failure x is %v, %v; want the durable %v", v, err, before)
	}

	mj.mu.Lock()
	mj.failAppend = nil
	mj.mu.Unlock()
	saved := probeInterval
	probeInterval = 0
	defer func() { probeInterval = saved }()
	var res SetResult
	waitFor(t, "writes to come back", func() bool {
		res, err = e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(100)})
		return err == nil
	})
	if res.Revision != before.ModRevision+1 {
		t.Fatalf("first write after recovery at revision %d, want %d", res.Revision, before.ModRevision+1)
	}
}

// Under writers, readers and watchers of several sessions, with appends
// held at random, every acknowledged write is in the journal and every
// watcher sees each change once, in order: the same model as without a
// journal, through the pipeline.
func TestPipelineUnderLoad(t *testing.T) {
	t.Run("watchers read at the end", func(t *testing.T) { pipelineUnderLoad(t, false) })
	// Chunks of the feed dropped and spilled while cycles are in flight.
	t.Run("tiny feed, watchers read along", func(t *testing.T) {
		tinyFeed(t)
		pipelineUnderLoad(t, true)
	})
}

func pipelineUnderLoad(t *testing.T, readAlong bool) {
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{snapshotEvery: 50}
	cfg := journalConfig(clock, mj)
	cfg.HistoryRevisions = 10_000
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const sessions, writers, writes = 3, 4, 300
	var subs []*Subscription
	for i := range sessions {
		id := fmt.Sprint("s", i)
		if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: id, TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		for w := range writers {
			if _, err := e.Register(ctx, RegisterRequest{Session: id, Name: fmt.Sprint("v", w), Type: TypeInteger, Value: Integer(0)}); err != nil {
				t.Fatal(err)
			}
		}
		sub, err := e.Watch(ctx, WatchRequest{Session: id, Pattern: "*", Buffer: sessions * writers * writes})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	var wg sync.WaitGroup
	for i := range sessions {
		for w := range writers {
			wg.Go(func() {
				id, name := fmt.Sprint("s", i), fmt.Sprint("v", w)
				for n := 1; n <= writes; n++ {
					if _, err := e.Set(ctx, SetRequest{Session: id, Variable: name, Value: Integer(int64(n))}); err != nil {
						t.Error(err)
						return
					}
					if n%7 == 0 {
						if v, err := e.Get(ctx, id, name); err != nil || v.Value.Integer() < int64(n) {
							t.Errorf("read of %s/%s after its set %d: %v, %v", id, name, n, v, err)
							return
						}
					}
				}
			})
		}
	}
	check := func(i int, sub *Subscription) {
		last := map[string]int64{}
		rev := int64(0)
		for range writers * writes {
			ev := nextEvent(t, sub)
			if ev.Revision != rev+1 && rev != 0 {
				t.Errorf("session %d: revision %d after %d", i, ev.Revision, rev)
				return
			}
			rev = ev.Revision
			name, v := ev.Variable.Name, ev.Variable.Value.Integer()
			if v != last[name]+1 {
				t.Errorf("session %d: %s = %d after %d", i, name, v, last[name])
				return
			}
			last[name] = v
		}
		sub.Close()
	}
	var reading sync.WaitGroup
	if readAlong {
		for i, sub := range subs {
			reading.Go(func() { check(i, sub) })
		}
	}
	wg.Wait()
	if !readAlong {
		for i, sub := range subs {
			check(i, sub)
		}
	}
	reading.Wait()
	if t.Failed() {
		return
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(journalConfig(clock, mj.clone()))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	for i := range sessions {
		for w := range writers {
			if v, err := again.Get(ctx, fmt.Sprint("s", i), fmt.Sprint("v", w)); err != nil || v.Value.Integer() != writes {
				t.Fatalf("after a restart s%d/v%d is %v, %v; want %d", i, w, v, err, writes)
			}
		}
	}
}

// A watch cut off when the syncer publishes ends between cycles; its
// session's TTL, re-armed as the loop unregisters it, is logged at once,
// not left in memory until some later command (a crash before one would
// lose it) or a snapshot taken past it.
func TestEndedWatchRearmIsLoggedAtOnce(t *testing.T) {
	var committed atomic.Int64
	testHookCommitted = func(n int) { committed.Add(int64(n)) }
	t.Cleanup(func() { testHookCommitted = nil })
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{}
	e, err := Open(journalConfig(clock, mj))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeInteger, Value: Integer(0)}); err != nil {
		t.Fatal(err)
	}
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"x"}, Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	mj.mu.Lock()
	mj.gate, mj.entered = make(chan struct{}), make(chan struct{}, 100)
	before := len(mj.records)
	mj.mu.Unlock()
	committed.Store(0)

	var wg sync.WaitGroup
	for v := range int64(2) {
		wg.Go(func() {
			if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(v + 1)}); err != nil {
				t.Error(err)
			}
		})
		if v == 0 {
			<-mj.entered
		}
	}
	// The second set waits in flight behind the first; when both are
	// published the watch, one event over its buffer, is cut off, 4s on.
	waitFor(t, "both sets applied", func() bool { return committed.Load() == 2 })
	clock.advance(4 * time.Second)
	close(mj.gate)
	wg.Wait()
	<-sub.Done()
	waitFor(t, "the re-armed TTL to be logged", func() bool {
		mj.mu.Lock()
		defer mj.mu.Unlock()
		return len(mj.records) == before+3 // two sets, one touch
	})
}
