package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeLog is an in-memory ReplicatedLog shared by several engines: one
// ordered list of entries, which a follower per engine applies in order.
// Like JetStream it drops a proposal whose id it has taken already.
type fakeLog struct {
	mu      sync.Mutex
	entries [][]byte
	ids     map[string]bool
	down    bool // Propose fails
	twice   bool // the next proposal lands twice (a retry the log did not catch)
	wake    chan struct{}
}

var errFakeLogDown = errors.New("fake log: down")

func newFakeLog() *fakeLog {
	return &fakeLog{ids: make(map[string]bool), wake: make(chan struct{})}
}

func (l *fakeLog) Propose(id string, msg []byte, done func(uint64, error)) {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		done(0, errFakeLogDown)
		return
	}
	if l.ids[id] {
		l.mu.Unlock()
		done(0, nil)
		return
	}
	l.ids[id] = true
	l.entries = append(l.entries, msg)
	if l.twice {
		l.twice = false
		l.entries = append(l.entries, msg)
	}
	seq := uint64(len(l.entries))
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
	done(seq, nil)
}

func (l *fakeLog) end() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.entries))
}

func (l *fakeLog) setDown(down bool) {
	l.mu.Lock()
	l.down = down
	l.mu.Unlock()
}

// follower feeds one engine the log, in order; paused holds it back (a
// node that lags).
type follower struct {
	paused atomic.Bool
	poke   chan struct{}
	stop   chan struct{}
	exited chan struct{}
}

func (l *fakeLog) follow(e *Engine) *follower {
	f := &follower{poke: make(chan struct{}, 1), stop: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(f.exited)
		for next := uint64(1); ; {
			l.mu.Lock()
			wake := l.wake
			var entry []byte
			if next <= uint64(len(l.entries)) && !f.paused.Load() {
				entry = l.entries[next-1]
			}
			l.mu.Unlock()
			if entry != nil {
				if err := e.ApplyLogged(next, entry); err != nil {
					return
				}
				next++
				continue
			}
			select {
			case <-wake:
			case <-f.poke:
			case <-f.stop:
				return
			}
		}
	}()
	return f
}

func (f *follower) resume() {
	f.paused.Store(false)
	select {
	case f.poke <- struct{}{}:
	default:
	}
}

// replicatedNodes starts n engines over one fake log; they are closed, and
// their followers stopped, when the test ends, which must leave no
// goroutine behind.
func replicatedNodes(t *testing.T, n int, cfg Config) (*fakeLog, []*Engine, []*follower) {
	t.Helper()
	return nodesOver(t, n, func(int) Config { return cfg })
}

// nodesOver starts n engines over one fake log, engine i with cfgOf(i)
// (its Log set here), and checks when the test ends that they left no
// goroutine behind.
func nodesOver(t *testing.T, n int, cfgOf func(i int) Config) (*fakeLog, []*Engine, []*follower) {
	t.Helper()
	before := runtime.NumGoroutine()
	l := newFakeLog()
	var engines []*Engine
	var followers []*follower
	for i := range n {
		cfg := cfgOf(i)
		cfg.Log = l
		e := New(cfg)
		engines = append(engines, e)
		followers = append(followers, l.follow(e))
	}
	t.Cleanup(func() {
		for i, e := range engines {
			close(followers[i].stop)
			<-followers[i].exited
			e.Close()
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			runtime.Gosched()
			time.Sleep(time.Millisecond)
		}
		if g := runtime.NumGoroutine(); g > before {
			t.Errorf("%d goroutines left behind (%d before)", g-before, before)
		}
	})
	return l, engines, followers
}

// caughtUp waits until every engine has applied the whole log.
func caughtUp(t *testing.T, l *fakeLog, engines ...*Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end := l.end()
	for i, e := range engines {
		if err := e.WaitApplied(ctx, end); err != nil {
			t.Fatalf("engine %d did not apply the log up to %d (at %d): %v", i, end, e.Applied(), err)
		}
	}
}

type imageCmd struct{ reply[[]byte] }

func (c *imageCmd) apply(st *state) {
	var b bytes.Buffer
	if err := st.capture().write(&b); err != nil {
		c.fail(err)
		return
	}
	c.set(b.Bytes(), nil)
}

// stateImage is the engine's whole state as a snapshot encodes it: sessions,
// variables, versions, revisions, deadlines, incarnations, histories.
func stateImage(t *testing.T, e *Engine) []byte {
	t.Helper()
	c := &imageCmd{}
	b, err := run(context.Background(), e, c, &c.reply)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameState fails unless every engine holds the same state, once the log
// has settled: what the engines propose themselves (refreshes, expiries)
// is applied everywhere.
func sameState(t *testing.T, l *fakeLog, engines ...*Engine) {
	t.Helper()
	for {
		end := l.end()
		// A command through each loop: whatever an earlier cycle
		// proposed has reached the log.
		for _, e := range engines {
			stateImage(t, e)
		}
		caughtUp(t, l, engines...)
		if l.end() == end {
			break
		}
	}
	want := stateImage(t, engines[0])
	for i, e := range engines[1:] {
		if got := stateImage(t, e); !bytes.Equal(got, want) {
			t.Fatalf("engine %d's state differs from engine 0's (%d bytes vs %d)", i+1, len(got), len(want))
		}
	}
}

// decisions records, through testHookApplied, how every engine decided
// every proposal.
type decisions struct {
	mu  sync.Mutex
	by  map[string]map[*state]string
	ids []string
}

func recordDecisions(t *testing.T) *decisions {
	d := &decisions{by: make(map[string]map[*state]string)}
	testHookApplied = func(st *state, id string, cmds []command) {
		var b bytes.Buffer
		for _, c := range cmds {
			b.WriteString(decision(c))
			b.WriteByte(';')
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.by[id] == nil {
			d.by[id] = make(map[*state]string)
			d.ids = append(d.ids, id)
		}
		if _, dup := d.by[id][st]; dup {
			t.Errorf("proposal %s applied twice on one engine", id)
		}
		d.by[id][st] = b.String()
	}
	t.Cleanup(func() { testHookApplied = nil })
	return d
}

// decision is what apply decided for c: its error and what it wrote.
func decision(c command) string {
	c = unscope(c)
	switch c := c.(type) {
	case *setManyCmd:
		s := fmt.Sprintf("set err=%v rev=%d", c.err, c.res.Revision)
		for _, it := range c.res.Items {
			s += fmt.Sprintf(" [%v rev=%d", it.Err, it.Revision)
			if it.Variable != nil {
				s += fmt.Sprintf(" v%d=%v", it.Variable.Version, it.Variable.Value)
			}
			s += "]"
		}
		return s
	case *createSessionCmd:
		return fmt.Sprintf("create err=%v created=%v inc=%s exp=%v", c.err, c.res.created, c.res.info.Incarnation, c.res.info.ExpiresAt.UnixNano())
	case *registerCmd:
		return fmt.Sprintf("register err=%v rev=%d", c.err, c.res.Revision)
	case *deleteCmd:
		return fmt.Sprintf("delete err=%v rev=%d", c.err, c.res)
	case *closeSessionCmd:
		return fmt.Sprintf("close err=%v n=%d", c.err, c.res)
	case *getSessionCmd:
		return fmt.Sprintf("refresh err=%v exp=%v", c.err, c.res.ExpiresAt.UnixNano())
	}
	return fmt.Sprintf("%T", c)
}

// agree fails unless every one of n engines applied every proposal, and
// all decided it the same way.
func (d *decisions) agree(t *testing.T, n int) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range d.ids {
		var first string
		i := 0
		for _, got := range d.by[id] {
			if i == 0 {
				first = got
			} else if got != first {
				t.Fatalf("proposal %s decided differently: %q and %q", id, first, got)
			}
			i++
		}
		if i != n {
			t.Fatalf("proposal %s applied by %d engines, want %d", id, i, n)
		}
	}
}

func TestReplicatedWriteAppliesOnEveryNode(t *testing.T) {
	ctx := context.Background()
	l, nodes, _ := replicatedNodes(t, 3, Config{})
	info, created, err := nodes[0].CreateSession(ctx, CreateSessionRequest{ID: "s"})
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if _, err := nodes[1].Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeInteger, Value: Integer(1)}); err != nil {
		t.Fatal(err)
	}
	var pos uint64
	res, err := nodes[2].Set(WithPosition(ctx, &pos), SetRequest{Session: "s", Variable: "x", Value: Integer(2)})
	if err != nil {
		t.Fatal(err)
	}
	if pos != l.end() || res.Revision != 2 {
		t.Fatalf("set at position %d, revision %d; want %d, 2", pos, res.Revision, l.end())
	}
	// A read on another node, once it has applied that far, sees it.
	if err := nodes[0].WaitApplied(ctx, pos); err != nil {
		t.Fatal(err)
	}
	v, err := nodes[0].Get(ctx, "s", "x")
	if err != nil || v.Value.Integer() != 2 || v.Version != 2 {
		t.Fatalf("node 0 reads %v, %v", v, err)
	}
	if err := nodes[1].WaitApplied(ctx, pos); err != nil {
		t.Fatal(err)
	}
	got, err := nodes[1].GetSession(ctx, "s")
	if err != nil || got.Incarnation != info.Incarnation || got.Revision != 2 {
		t.Fatalf("node 1's session: %+v, %v (incarnation %s)", got, err, info.Incarnation)
	}
	caughtUp(t, l, nodes...)
	sameState(t, l, nodes...)
}

// TestReplicatedConflictingCAS has two nodes compare-and-set one variable
// at the same version, many times over: exactly one wins each round, and
// every node decides every proposal the same way.
func TestReplicatedConflictingCAS(t *testing.T) {
	d := recordDecisions(t)
	ctx := context.Background()
	l, nodes, _ := replicatedNodes(t, 3, Config{})
	sessionWithX(t, nodes[0])
	version := int64(1)
	for round := range 50 {
		var wins, conflicts atomic.Int32
		var wg sync.WaitGroup
		for _, n := range nodes[:2] {
			wg.Go(func() {
				_, err := n.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(round)),
					HasExpectedVersion: true, ExpectedVersion: version})
				var vc *VersionConflictError
				switch {
				case err == nil:
					wins.Add(1)
				case errors.As(err, &vc):
					conflicts.Add(1)
				default:
					t.Errorf("round %d: %v", round, err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != 1 {
			t.Fatalf("round %d: %d wins, %d conflicts; want one of each", round, wins.Load(), conflicts.Load())
		}
		version++
	}
	caughtUp(t, l, nodes...)
	d.agree(t, 3)
	sameState(t, l, nodes...)
}

// TestReplicatedRandomHistory runs random writes from many goroutines on
// random nodes (sets that break constraints, compare-and-sets, atomic and
// non-atomic multi-sets, upserts, deletes, heartbeats, sessions closed
// and created again) and checks that every node decided every proposal
// the same way and holds the same state, that a node started afterwards
// catches up to the same state from the log alone, and that what each
// caller was answered is what the log's order gives (a model replaying
// the acknowledged successful sets, in log order, per variable).
func TestReplicatedRandomHistory(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	d := recordDecisions(t)
	ctx := context.Background()
	l, nodes, _ := replicatedNodes(t, 3, Config{})
	sessions := []string{"a", "b", "c"}
	names := []string{"x", "y", "z"}
	for _, s := range sessions {
		if _, _, err := nodes[0].CreateSession(ctx, CreateSessionRequest{ID: s}); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if _, err := nodes[1].Register(ctx, RegisterRequest{Session: s, Name: n, Type: TypeInteger, Value: Integer(0),
				Constraints: Constraints{MinInteger: ptr(int64(0)), MaxInteger: ptr(int64(100))}}); err != nil {
				t.Fatal(err)
			}
		}
	}

	type ack struct {
		pos      uint64
		session  string
		name     string
		version  int64
		revision int64
	}
	var mu sync.Mutex
	var acks []ack
	note := func(pos uint64, session string, it SetItemResult) {
		if it.Err != nil || it.Variable == nil {
			return
		}
		mu.Lock()
		acks = append(acks, ack{pos, session, it.Variable.Name, it.Variable.Version, it.Revision})
		mu.Unlock()
	}

	const writers, ops = 6, 150
	var wg sync.WaitGroup
	for w := range writers {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
		wg.Go(func() {
			for range ops {
				n := nodes[rng.IntN(len(nodes))]
				s := sessions[rng.IntN(len(sessions))]
				name := names[rng.IntN(len(names))]
				val := Integer(int64(rng.IntN(120) - 10)) // some break the constraints
				var pos uint64
				pctx := WithPosition(ctx, &pos)
				switch op := rng.IntN(10); {
				case op < 4:
					res, err := n.Set(pctx, SetRequest{Session: s, Variable: name, Value: val})
					if err == nil {
						note(pos, s, SetItemResult{SetResult: res})
					}
				case op < 6: // compare-and-set against what this node has
					v, err := n.Get(ctx, s, name)
					if err != nil {
						continue
					}
					res, err := n.Set(pctx, SetRequest{Session: s, Variable: name, Value: val, HasExpectedVersion: true, ExpectedVersion: v.Version})
					if err == nil {
						note(pos, s, SetItemResult{SetResult: res})
					}
				case op < 8:
					atomic := rng.IntN(2) == 0
					res, err := n.SetMany(pctx, SetManyRequest{Session: s, Atomic: atomic, Sets: []SetRequest{
						{Variable: names[0], Value: val}, {Variable: names[1], Value: Integer(int64(rng.IntN(100)))},
						{Variable: "u", Value: val, CreateType: TypeInteger}}})
					if err == nil {
						for _, it := range res.Items {
							note(pos, s, it)
						}
					}
				case op < 9:
					if rng.IntN(2) == 0 {
						if _, err := n.Delete(pctx, s, "u"); err == nil {
							mu.Lock()
							acks = append(acks, ack{pos: pos, session: s, name: "u"}) // version 0: starts over
							mu.Unlock()
						}
					} else {
						_, _ = n.Heartbeat(ctx, s)
					}
				default:
					if rng.IntN(8) == 0 { // rarely: a session ends and starts again
						_, _ = n.CloseSession(ctx, s)
						if _, created, err := n.CreateSession(pctx, CreateSessionRequest{ID: s}); err == nil && created {
							mu.Lock()
							acks = append(acks, ack{pos: pos, session: s}) // a new incarnation: versions start over
							mu.Unlock()
						}
						for _, name := range names {
							_, _ = n.Register(ctx, RegisterRequest{Session: s, Name: name, Type: TypeInteger, Value: Integer(0)})
						}
					}
				}
			}
		})
	}
	wg.Wait()
	caughtUp(t, l, nodes...)
	d.agree(t, 3)
	sameState(t, l, nodes...)

	// A node that joins now catches up from the log alone.
	late := New(Config{Log: l})
	f := l.follow(late)
	defer func() { close(f.stop); <-f.exited; late.Close() }()
	caughtUp(t, l, late)
	sameState(t, l, nodes[0], late)

	// The model: per variable and incarnation of its session, the
	// acknowledged successful sets, in log order, have strictly
	// increasing versions (a delete starts a variable over), and the last
	// is the version every node holds.
	type key struct{ s, n string }
	last := make(map[key]ack)
	for i := range acks {
		for j := i + 1; j < len(acks); j++ {
			if acks[j].pos < acks[i].pos || (acks[j].pos == acks[i].pos && acks[j].revision < acks[i].revision) {
				acks[i], acks[j] = acks[j], acks[i]
			}
		}
	}
	for _, a := range acks {
		if a.name == "" {
			for k := range last {
				if k.s == a.session {
					delete(last, k)
				}
			}
			continue
		}
		k := key{a.session, a.name}
		if a.version == 0 {
			delete(last, k)
			continue
		}
		if p, ok := last[k]; ok && a.version <= p.version {
			t.Fatalf("%v acknowledged after %v in log order with a version not above it", a, p)
		}
		last[k] = a
	}
	for k, a := range last {
		v, err := nodes[2].Get(ctx, k.s, k.n)
		if err != nil {
			t.Fatalf("%s/%s: %v, after its last acknowledged write", k.s, k.n, err)
		}
		if v.Version != a.version {
			t.Fatalf("%s/%s is at version %d, not the last acknowledged %d", k.s, k.n, v.Version, a.version)
		}
	}
}

// TestReplicatedDuplicateApplyOnce: a proposal that lands twice in the log
// (a retried publish the log did not deduplicate) applies once on every
// node.
func TestReplicatedDuplicateApplyOnce(t *testing.T) {
	d := recordDecisions(t)
	ctx := context.Background()
	l, nodes, _ := replicatedNodes(t, 2, Config{})
	sessionWithX(t, nodes[0])
	l.mu.Lock()
	l.twice = true
	l.mu.Unlock()
	res, err := nodes[1].Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(5)})
	if err != nil || res.Revision != 2 {
		t.Fatalf("set: %+v, %v", res, err)
	}
	caughtUp(t, l, nodes...)
	for i, n := range nodes {
		info, err := n.GetSession(ctx, "s")
		if err != nil || info.Revision != 2 {
			t.Fatalf("node %d at revision %d (%v); the duplicate applied again", i, info.Revision, err)
		}
	}
	d.agree(t, 2)
	sameState(t, l, nodes...)
}

// TestReplicatedLogDown: with the log unreachable, writes fail with
// ErrUnavailable and change nothing, reads go on; writes work again when
// it is back.
func TestReplicatedLogDown(t *testing.T) {
	ctx := context.Background()
	l, nodes, _ := replicatedNodes(t, 2, Config{})
	sessionWithX(t, nodes[0])
	caughtUp(t, l, nodes...)
	before := stateImage(t, nodes[1])
	l.setDown(true)
	if _, err := nodes[1].Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(1)}); !errors.Is(err, ErrLogUnavailable) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("set with the log down: %v, want ErrUnavailable", err)
	}
	if v, err := nodes[1].Get(ctx, "s", "x"); err != nil || v.Value.Integer() != 0 {
		t.Fatalf("read with the log down: %v, %v", v, err)
	}
	if got := stateImage(t, nodes[1]); !bytes.Equal(got, before) {
		t.Fatal("a failed write (or a read) changed the state")
	}
	l.setDown(false)
	if _, err := nodes[1].Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(1)}); err != nil {
		t.Fatalf("set after the log is back: %v", err)
	}
}

// TestReplicatedLaggingNode: a node that has not applied the log is stale
// for a local read, and exact once it waits for the writer's position.
func TestReplicatedLaggingNode(t *testing.T) {
	ctx := context.Background()
	l, nodes, fs := replicatedNodes(t, 2, Config{})
	sessionWithX(t, nodes[0])
	caughtUp(t, l, nodes...)
	fs[1].paused.Store(true)
	var pos uint64
	if _, err := nodes[0].Set(WithPosition(ctx, &pos), SetRequest{Session: "s", Variable: "x", Value: Integer(7)}); err != nil {
		t.Fatal(err)
	}
	if v, _ := nodes[1].Get(ctx, "s", "x"); v.Value.Integer() != 0 {
		t.Fatalf("the paused node read %v", v.Value)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := nodes[1].WaitApplied(short, pos); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied on a paused node: %v", err)
	}
	fs[1].resume()
	if err := nodes[1].WaitApplied(ctx, pos); err != nil {
		t.Fatal(err)
	}
	if v, _ := nodes[1].Get(ctx, "s", "x"); v.Value.Integer() != 7 {
		t.Fatalf("after waiting for position %d the node read %v", pos, v.Value)
	}
}

// nodeClocks gives each of n nodes its own clock, starting together.
type nodeClocks []atomic.Int64

func (c nodeClocks) now(i int) func() time.Time {
	return func() time.Time { return time.Unix(0, c[i].Load()) }
}

func (c nodeClocks) set(i int, d time.Duration) { c[i].Store(time.Unix(1e9, 0).Add(d).UnixNano()) }

// clockedNodes starts n engines over one fake log, each on its own clock
// (at the same instant until a test moves one).
func clockedNodes(t *testing.T, n int, cfg Config) (*fakeLog, []*Engine, []*follower, nodeClocks) {
	t.Helper()
	clocks := make(nodeClocks, n)
	l, engines, followers := nodesOver(t, n, func(i int) Config {
		clocks.set(i, 0)
		c := cfg
		c.Now = clocks.now(i)
		return c
	})
	return l, engines, followers, clocks
}

// TestReplicatedExpiry: sessions expire by log records. A node whose
// clock passes a deadline proposes the expiry and every node applies it;
// two nodes proposing it make one record; an expiry proposed by a node
// that had not seen a heartbeat is a no-op; a node holding a watch keeps
// its session alive against the other nodes' clocks.
func TestReplicatedExpiry(t *testing.T) {
	ctx := context.Background()
	const ttl = 10 * time.Second
	l, nodes, fs, clocks := clockedNodes(t, 3, Config{})
	create := func(id string) {
		t.Helper()
		if _, _, err := nodes[0].CreateSession(ctx, CreateSessionRequest{ID: id, TTL: ttl}); err != nil {
			t.Fatal(err)
		}
		caughtUp(t, l, nodes...)
	}
	alive := func(id string) bool {
		t.Helper()
		caughtUp(t, l, nodes...)
		n := 0
		for _, e := range nodes {
			if _, err := e.GetSession(ctx, id); err == nil {
				n++
			}
		}
		if n != 0 && n != len(nodes) {
			t.Fatalf("session %q is alive on %d of %d nodes", id, n, len(nodes))
		}
		return n > 0
	}

	t.Run("expires once", func(t *testing.T) {
		create("e")
		clocks.set(1, ttl+time.Second)
		clocks.set(2, ttl+2*time.Second)
		before := l.end()
		_, _ = nodes[1].ListSessions(ctx) // a look at the sessions looks for expiries too
		_, _ = nodes[2].ListSessions(ctx)
		if alive("e") {
			t.Fatal("the session outlived its TTL")
		}
		if got := l.end() - before; got != 1 {
			t.Fatalf("%d log entries for one expiry", got)
		}
		sameState(t, l, nodes...)
	})

	for i := range nodes {
		clocks.set(i, 0)
	}
	t.Run("a heartbeat first makes the expiry a no-op", func(t *testing.T) {
		create("h")
		fs[1].paused.Store(true)
		clocks.set(0, ttl/2)
		if _, err := nodes[0].Heartbeat(ctx, "h"); err != nil {
			t.Fatal(err)
		}
		clocks.set(1, ttl+time.Second) // it has not seen the heartbeat
		_, _ = nodes[1].ListSessions(ctx)
		fs[1].resume()
		caughtUp(t, l, nodes...)
		// Node 2's clock is behind the deadline: its read proposes no
		// refresh.
		info, _ := nodes[2].GetSession(ctx, "h")
		if want := time.Unix(1e9, 0).Add(ttl / 2).Add(ttl); !info.ExpiresAt.Equal(want) {
			t.Fatalf("deadline %v, want the heartbeat's %v", info.ExpiresAt, want)
		}
		if !alive("h") {
			t.Fatal("an expiry proposed before the heartbeat applied after it")
		}
		sameState(t, l, nodes...)
	})

	for i := range nodes {
		clocks.set(i, 0)
	}
	t.Run("a watch keeps its session alive across nodes", func(t *testing.T) {
		create("w")
		sub, err := nodes[0].Watch(ctx, WatchRequest{Session: "w"})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		for step := time.Duration(1); step <= 4; step++ {
			// Past half the TTL the watching node refreshes it.
			clocks.set(0, step*ttl*6/10)
			_, _ = nodes[0].ListSessions(ctx)
			caughtUp(t, l, nodes...)
			clocks.set(1, step*ttl*6/10+ttl/2)
			_, _ = nodes[1].ListSessions(ctx)
			if !alive("w") {
				t.Fatalf("step %d: the watched session expired", step)
			}
		}
		sameState(t, l, nodes...)
	})
}

type expiriesCmd struct{ reply[int] }

func (c *expiriesCmd) apply(st *state) { c.set(len(st.expiries), nil) }

// TestReplicatedExpiryHeapBounded: reads and refreshes of a long-lived
// session keep a bounded number of expiry entries (each read after a
// refresh once added one that re-pushed itself forever).
func TestReplicatedExpiryHeapBounded(t *testing.T) {
	ctx := context.Background()
	const ttl = 16 * time.Second
	l, nodes, _, clocks := clockedNodes(t, 1, Config{})
	if _, _, err := nodes[0].CreateSession(ctx, CreateSessionRequest{ID: "s", TTL: ttl}); err != nil {
		t.Fatal(err)
	}
	for step := range 200 {
		clocks.set(0, time.Duration(step)*ttl/8)
		if _, err := nodes[0].GetSession(ctx, "s"); err != nil { // proposes a refresh
			t.Fatal(err)
		}
		sameState(t, l, nodes...)
		_, _ = nodes[0].ListSessions(ctx) // looks at the expiry heap
	}
	c := &expiriesCmd{}
	n, _ := run(ctx, nodes[0], c, &c.reply)
	if n > 4 {
		t.Fatalf("%d expiry entries for one session", n)
	}
	if _, err := nodes[0].GetSession(ctx, "s"); err != nil {
		t.Fatalf("the session refreshed by reads expired: %v", err)
	}
}

// sessionWithX creates session "s" holding x = 0 through e.
func sessionWithX(t *testing.T, e *Engine) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeInteger, Value: Integer(0)}); err != nil {
		t.Fatal(err)
	}
}
