package cluster

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/engine"
)

// nodeSet is the varwatch nodes of a test, which it kills and restarts.
type nodeSet struct {
	t     *testing.T
	url   string
	mu    sync.Mutex
	nodes []*Node // nil while killed; guarded by mu
	// fromSnapshot counts the nodes started from a snapshot; guarded by
	// mu.
	fromSnapshot int
}

func (s *nodeSet) start(i int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Snapshots every 100 positions, 3 kept: a restarted node starts from
	// one, the stream is trimmed while the test runs, and a node may lag
	// 200 positions (a NATS server's restart) and still catch up.
	n, err := Start(ctx, Config{URL: s.url, PublishTimeout: 2 * time.Second, SnapshotEvery: 100, SnapshotsKept: 3}, engine.Config{})
	if err != nil {
		s.t.Error(err)
		return
	}
	select {
	case <-n.Ready():
	case <-ctx.Done():
		s.t.Error("a restarted node did not catch up")
	}
	s.mu.Lock()
	if n.Log.follow.from > 0 {
		s.fromSnapshot++
	}
	s.nodes[i] = n
	s.mu.Unlock()
}

func (s *nodeSet) kill(i int) {
	s.mu.Lock()
	n := s.nodes[i]
	s.nodes[i] = nil
	s.mu.Unlock()
	if n != nil {
		n.Close()
	}
}

// pick returns a random live node other than not (nil: any).
func (s *nodeSet) pick(rng *rand.Rand, not *Node) *Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	var live []*Node
	for _, n := range s.nodes {
		if n != nil && (n != not || len(s.nodes) == 1) {
			live = append(live, n)
		}
	}
	if len(live) == 0 {
		return nil
	}
	return live[rng.IntN(len(live))]
}

// change is one value change as a watcher saw it, or a write as its
// writer was answered.
type change struct {
	rev   int64
	name  string
	value int64
}

// TestCrossNodeRandomized: writers on random nodes, watchers on random
// nodes that hop to another node on every resume, while varwatch nodes
// are killed and restarted and one NATS server is killed and restarted.
// Against the model (the acknowledged writes): every watcher sees every
// revision exactly once, in order, with no gap, each acknowledged write at
// the revision it was answered with; every watcher sees the same history;
// and at the end every node holds the same state, with every acknowledged
// write.
func TestCrossNodeRandomized(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	run := 4 * time.Second
	if *long {
		run = 60 * time.Second
	}
	ctx := context.Background()
	fastSnapshots(t)
	nats := natstest.Start(t, 3)
	set := &nodeSet{t: t, url: nats.URL(), nodes: make([]*Node, 3)}
	for i := range set.nodes {
		set.start(i)
	}
	t.Cleanup(func() {
		for i := range set.nodes {
			set.kill(i)
		}
	})
	names := []string{"a", "b", "c", "d"}
	first := set.nodes[0].Engine
	info, _, err := first.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	var startRev int64
	for _, name := range names {
		res, err := first.Register(ctx, engine.RegisterRequest{Session: "s", Name: name, Type: engine.TypeInteger, Value: engine.Integer(0)})
		if err != nil {
			t.Fatal(err)
		}
		startRev = res.Revision
	}

	stop := make(chan struct{})
	var mu sync.Mutex
	acked := map[int64]change{} // by revision
	var wg sync.WaitGroup
	for w := range 4 {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := set.pick(rng, nil)
				if n == nil {
					time.Sleep(time.Millisecond)
					continue
				}
				name := names[rng.IntN(len(names))]
				value := int64(w)<<32 | i // unique: it names the write
				res, err := n.Engine.Set(ctx, engine.SetRequest{Session: "s", Variable: name, Value: engine.Integer(value)})
				if err != nil {
					continue // may or may not have applied: the model has no opinion
				}
				mu.Lock()
				acked[res.Revision] = change{res.Revision, name, value}
				mu.Unlock()
			}
		})
	}

	// Chaos: kill and restart a varwatch node, or NATS server 0.
	var chaos sync.WaitGroup
	var natsKills, nodeKills int
	chaos.Go(func() {
		rng := rand.New(rand.NewPCG(seed, 99))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(200+rng.IntN(400)) * time.Millisecond):
			}
			// Each NATS kill may cost an election (seconds): one in a
			// short run, more in a long one.
			if rng.IntN(3) == 0 && (natsKills == 0 || *long) {
				natsKills++
				nats.Kill(0)
				time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
				nats.Restart(0)
			} else {
				i := rng.IntN(len(set.nodes))
				nodeKills++
				set.kill(i)
				set.start(i)
			}
		}
	})

	// Watchers: each resumes, on another node every time, from the last
	// revision it saw, until it has seen final (once known).
	var final struct {
		sync.Mutex
		rev int64 // 0 until the writers have stopped
	}
	seen := make([][]change, 3)
	var watchers sync.WaitGroup
	for w := range seen {
		rng := rand.New(rand.NewPCG(seed, uint64(100+w)))
		watchers.Go(func() {
			last := startRev
			var on *Node
			for {
				final.Lock()
				done := final.rev != 0 && last >= final.rev
				final.Unlock()
				if done {
					return
				}
				n := set.pick(rng, on)
				if n == nil {
					time.Sleep(time.Millisecond)
					continue
				}
				on = n
				wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := n.Sync(wctx)
				var sub *engine.Subscription
				if err == nil {
					sub, err = n.Engine.Watch(wctx, engine.WatchRequest{Session: "s", Resume: true, StartRevision: last, Incarnation: info.Incarnation})
				}
				if err != nil {
					cancel()
					continue // that node is going down, or NATS is: hop
				}
				for range 1 + rng.IntN(50) {
					ev, err := sub.Next(wctx)
					if err != nil {
						break
					}
					if ev.Type != engine.EventValueChange {
						continue
					}
					if ev.Revision != last+1 {
						t.Errorf("watcher %d: revision %d after %d (on a resume from node to node)", w, ev.Revision, last)
					}
					last = ev.Revision
					seen[w] = append(seen[w], change{ev.Revision, ev.Variable.Name, ev.Variable.Value.Integer()})
				}
				sub.Close()
				cancel()
			}
		})
	}

	time.Sleep(run)
	close(stop)
	wg.Wait()
	chaos.Wait()
	nats.Restart(0)
	for i, n := range set.nodes {
		if n == nil {
			set.start(i)
		}
	}
	var nodes []*node
	for _, n := range set.nodes {
		nodes = append(nodes, &node{n, n.Engine})
	}
	sameContents(t, nodes)
	sameSnapshots(t, nodes)
	s, err := set.nodes[0].Engine.GetSession(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	final.Lock()
	final.rev = s.Revision
	final.Unlock()
	watchers.Wait()

	// The model: acknowledged writes at their revisions, in every
	// watcher's history; all histories the same.
	history := map[int64]change{}
	for w, ch := range seen {
		if len(ch) != int(s.Revision-startRev) {
			t.Fatalf("watcher %d saw %d changes, want %d", w, len(ch), s.Revision-startRev)
		}
		for _, c := range ch {
			if h, ok := history[c.rev]; ok && h != c {
				t.Fatalf("revision %d: watcher %d saw %+v, another %+v", c.rev, w, c, h)
			}
			history[c.rev] = c
		}
	}
	for rev, a := range acked {
		if history[rev] != a {
			t.Fatalf("the write acknowledged at revision %d (%+v) was seen as %+v", rev, a, history[rev])
		}
	}
	latest := map[string]change{}
	for _, c := range history {
		if c.rev > latest[c.name].rev {
			latest[c.name] = c
		}
	}
	for _, n := range nodes {
		for name, c := range latest {
			v, err := n.e.Get(ctx, "s", name)
			if err != nil || v.Value.Integer() != c.value {
				t.Fatalf("%s is %v (%v) on a node; its last change was %+v", name, v, err, c)
			}
		}
	}
	set.mu.Lock()
	restored := set.fromSnapshot
	set.mu.Unlock()
	t.Logf("%d revisions, %d acknowledged writes, every watcher saw all; %d varwatch node and %d NATS server kills; %d nodes started from a snapshot",
		s.Revision-startRev, len(acked), nodeKills, natsKills, restored)
}
