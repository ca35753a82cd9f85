package filterfeed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/plugins"
)

// passthrough is a chain of the committed passthrough fixture, which
// keeps every update: what a member receives is then exactly what an
// engine watch of its variables would.
func passthrough(t *testing.T) *plugins.Chain {
	t.Helper()
	ctx := context.Background()
	mgr, err := plugins.New(ctx, plugins.Config{
		Plugins:  []plugins.PluginConfig{{Name: "passthrough", Path: filepath.Join("..", "plugins", "testdata", "passthrough.wasm"), Timeout: 10 * time.Second}},
		CacheDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := mgr.Acquire(ctx, []plugins.FilterSpec{{Name: "passthrough"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		chain.Release()
		_ = mgr.Close(ctx)
	})
	return chain
}

type change struct {
	rev   int64
	name  string
	value int64
}

// Members join one feed at random moments while writers write, each
// watching a random subset of the variables, with or without initial
// values. Checked against the writers' acknowledgements: every member
// gets a snapshot, then every change of its variables after the
// snapshot's revision exactly once, in revision order, and nothing else;
// all of them share one feed, which stops when the last leaves.
func TestMembersJoiningDuringWritesMissNothing(t *testing.T) {
	e := engine.New(engine.Config{})
	defer e.Close()
	ctx := context.Background()
	chain := passthrough(t)
	fs := New(Config{Backend: e})

	const vars, writers, writes, members = 6, 3, 300, 12
	if _, _, err := e.CreateSession(ctx, engine.CreateSessionRequest{ID: "s", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for i := range vars {
		if _, err := e.Register(ctx, engine.RegisterRequest{Session: "s", Name: fmt.Sprint("v", i), Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var acked []change
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for n := range writes {
				name := fmt.Sprint("v", r.IntN(vars))
				v := int64(w*writes + n + 1)
				res, err := e.Set(ctx, engine.SetRequest{Session: "s", Variable: name, Value: engine.Integer(v)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, change{res.Revision, name, v})
				mu.Unlock()
			}
		})
	}

	type joined struct {
		m       *Member
		names   []string
		initial bool
	}
	var ms []joined
	r := rand.New(rand.NewPCG(99, 2))
	for range members {
		time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
		var names []string
		for i := range vars {
			if r.IntN(2) == 0 {
				names = append(names, fmt.Sprint("v", i))
			}
		}
		if len(names) == 0 {
			names = []string{"v0"}
		}
		initial := r.IntN(2) == 0
		m, err := fs.Open(ctx, engine.WatchRequest{Session: "s", Variables: names, IncludeInitialValues: initial}, chain)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, joined{m, names, initial})
	}
	if n := fs.Active(); n != 1 {
		t.Errorf("%d feeds for one chain on one session, want 1", n)
	}
	wg.Wait()
	slices.SortFunc(acked, func(a, b change) int { return int(a.rev - b.rev) })
	last := acked[len(acked)-1].rev

	for i, j := range ms {
		var got []engine.Event
		deadline := time.Now().Add(10 * time.Second)
		for len(got) == 0 || got[len(got)-1].Revision < last {
			if time.Now().After(deadline) {
				t.Fatalf("member %d: timed out at revision %d of %d", i, got[len(got)-1].Revision, last)
			}
			evs, err := j.m.Drain(nil)
			if err != nil {
				t.Fatalf("member %d ended: %v", i, err)
			}
			got = append(got, evs...)
			if len(evs) == 0 {
				heartbeat := j.m.Heartbeat(time.Now())
				if heartbeat.Revision >= last {
					break
				}
				select {
				case <-j.m.Ready():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
		snap := j.m.SnapshotRevision()
		if j.initial {
			if len(got) < len(j.names)+1 || got[len(j.names)].Type != engine.EventInitialValuesComplete {
				t.Fatalf("member %d: no snapshot of its %d variables first: %+v", i, len(j.names), got)
			}
			got = got[len(j.names)+1:]
		}
		var want []change
		for _, c := range acked {
			if c.rev > snap && slices.Contains(j.names, c.name) {
				want = append(want, c)
			}
		}
		var have []change
		for _, ev := range got {
			have = append(have, change{ev.Revision, ev.Variable.Name, ev.Variable.Value.Integer()})
		}
		if !slices.Equal(have, want) {
			t.Fatalf("member %d (snapshot %d, %v): got %d changes, want %d\ngot  %v\nwant %v", i, snap, j.names, len(have), len(want), have, want)
		}
	}
	for _, j := range ms {
		j.m.Close()
	}
	done := make(chan struct{})
	go func() { fs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the feed did not stop when its last member left")
	}
	if n := fs.Active(); n != 0 {
		t.Fatalf("%d feeds after every member left", n)
	}
}
