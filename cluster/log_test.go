package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/engine"
)

// node is one varwatch node under test.
type node struct {
	*Node
	e *engine.Engine
}

func (n *node) l() *Log { return n.Log }

// startNode starts a node connected to url, and waits until it has caught
// up; it stops when the test ends.
func startNode(t testing.TB, url string) *node {
	t.Helper()
	return startNodeWith(t, Config{URL: url}, engine.Config{})
}

// startNodeWith is startNode with cfg (PublishTimeout 2s and a test
// logger unless set) and ecfg.
func startNodeWith(t testing.TB, cfg Config, ecfg engine.Config) *node {
	t.Helper()
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t, "node "+cfg.URL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	select {
	case <-n.Ready():
	case <-ctx.Done():
		t.Fatal("the node did not catch up")
	}
	return &node{n, n.Engine}
}

// startNodes starts a 3-server JetStream cluster and n nodes, node i
// connected to server i%3 only.
func startNodes(t testing.TB, n int) (*natstest.Cluster, []*node) {
	t.Helper()
	return startNodesOver(t, 3, n)
}

// startNodesOver starts an m-server JetStream cluster and n nodes, node i
// connected to server i%m only. One server (no elections) starts and
// restarts in a fraction of the time three take.
func startNodesOver(t testing.TB, m, n int) (*natstest.Cluster, []*node) {
	t.Helper()
	c := natstest.Start(t, m)
	var nodes []*node
	for i := range n {
		nodes = append(nodes, startNode(t, c.ServerURL(i%m)))
	}
	return c, nodes
}

// contents is what a node holds, for comparing nodes: every session's
// info and every variable's id, value, version and revisions.
func contents(t *testing.T, n *node) string {
	t.Helper()
	ctx := context.Background()
	ss, err := n.e.ListSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := ""
	for _, info := range ss {
		s += fmt.Sprintf("%s inc=%s rev=%d exp=%d\n", info.ID, info.Incarnation, info.Revision, info.ExpiresAt.UnixNano())
		vs, err := n.e.List(ctx, info.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs.Variables {
			s += fmt.Sprintf("  %s %s=%v v%d c%d m%d\n", v.ID, v.Name, v.Value, v.Version, v.CreateRevision, v.ModRevision)
		}
	}
	return s
}

// sameContents syncs every node with the stream and compares them.
func sameContents(t *testing.T, nodes []*node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The stream can still grow after a test's writers stop: a publish
	// whose writer gave up may be stored on a later try. So every node
	// is compared at one position, the stream's end: if the end did not
	// move while the nodes were read, each of them applied exactly that.
	for {
		end, err := nodes[0].l().LastSequence(ctx)
		if err != nil {
			t.Fatalf("the stream's end: %v", err)
		}
		var got []string
		for i, n := range nodes {
			if err := n.e.WaitApplied(ctx, end); err != nil {
				t.Fatalf("node %d: %v", i, err)
			}
			got = append(got, contents(t, n))
		}
		again, err := nodes[0].l().LastSequence(ctx)
		if err != nil {
			t.Fatalf("the stream's end: %v", err)
		}
		if again != end {
			continue
		}
		for i := 1; i < len(got); i++ {
			if got[i] != got[0] {
				t.Fatalf("at stream position %d node %d holds\n%s\nnode 0 holds\n%s", end, i, got[i], got[0])
			}
		}
		return
	}
}

func TestWritesOnOneNodeReachWatchesOnAnother(t *testing.T) {
	ctx := context.Background()
	_, nodes := startNodes(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	if _, _, err := a.e.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.e.Register(ctx, engine.RegisterRequest{Session: "s", Name: "x", Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
		t.Fatal(err)
	}
	if err := c.l().Sync(ctx, c.e); err != nil {
		t.Fatal(err)
	}
	sub, err := c.e.Watch(ctx, engine.WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var revs []int64
	for i := 1; i <= 20; i++ {
		res, err := b.e.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(int64(i))})
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, res.Revision)
	}
	var got []int64
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(got) < len(revs) {
		ev, err := sub.Next(wctx)
		if err != nil {
			t.Fatalf("after %d events: %v", len(got), err)
		}
		if ev.Type == engine.EventValueChange {
			got = append(got, ev.Revision)
		}
	}
	if !reflect.DeepEqual(got, revs) {
		t.Fatalf("the watch on node c saw revisions %v; the writes on node b were answered %v", got, revs)
	}
	sameContents(t, nodes)

	// A retried publish (the same message, the same Nats-Msg-Id, as the
	// publisher sends when an answer is lost) is stored once.
	last, err := b.l().LastSequence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := b.l().stream.GetMsg(ctx, last)
	if err != nil {
		t.Fatal(err)
	}
	id := stored.Header.Get("Nats-Msg-Id")
	if id == "" {
		t.Fatal("the publisher sent no Nats-Msg-Id")
	}
	ack, err := b.l().js.Publish(ctx, stored.Subject, stored.Data, jetstream.WithMsgID(id))
	if err != nil || !ack.Duplicate || ack.Sequence != last {
		t.Fatalf("the retry was answered %+v, %v; want the duplicate of %d", ack, err, last)
	}
	sameContents(t, nodes)
	if v, _ := c.e.Get(ctx, "s", "x"); v.Version != 21 {
		t.Fatalf("x at version %d after a retried publish, want 21", v.Version)
	}
}

// recoveryBound is how long writes may take to work again after NATS
// servers die or come back.
const recoveryBound = 2 * time.Minute

// streamCluster describes the stream's leader and replicas as l's
// server reports them, for a failure's message.
func streamCluster(l *Log) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Sprintf("(stream info: %v)", err)
	}
	if info.Cluster == nil {
		return "(no cluster info)"
	}
	desc := fmt.Sprintf("leader %q", info.Cluster.Leader)
	for _, r := range info.Cluster.Replicas {
		desc += fmt.Sprintf(", replica %s current %v active %v lag %d", r.Name, r.Current, r.Active, r.Lag)
	}
	return desc
}

// TestOneNATSServerKilled kills a JetStream server in the middle of
// writes: writes go on after the election, and nothing acknowledged is
// lost.
func TestOneNATSServerKilled(t *testing.T) {
	ctx := context.Background()
	c, nodes := startNodes(t, 2)
	w := nodes[1] // connected to server 1; server 0 dies
	if _, _, err := w.e.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.e.Register(ctx, engine.RegisterRequest{Session: "s", Name: "x", Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
		t.Fatal(err)
	}
	acked, failed := 0, 0
	// A liveness bound, not a timing claim: elections take 10-20 s here
	// when the machine is quiet, and a loaded one once took past 30 s.
	deadline := time.Now().Add(recoveryBound)
	for acked < 100 {
		if acked == 30 && failed == 0 {
			c.Kill(0)
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d writes acknowledged (%d failed) within %v of a server dying; the stream's cluster as server 1 sees it: %s",
				acked, failed, recoveryBound, streamCluster(w.l()))
		}
		_, err := w.e.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(int64(acked + 1)),
			HasExpectedVersion: true, ExpectedVersion: int64(acked + 1)})
		var vc *engine.VersionConflictError
		switch {
		case err == nil:
			acked++
		case errors.As(err, &vc):
			// A write reported failed had applied after all: go on from it.
			acked++
		case errors.Is(err, engine.ErrUnavailable):
			failed++
		default:
			t.Fatal(err)
		}
	}
	c.Restart(0)
	sameContents(t, nodes)
	v, err := nodes[0].e.Get(ctx, "s", "x")
	if err != nil || v.Version != 101 {
		t.Fatalf("node 0 has x at %v (%v); want version 101", v, err)
	}
	t.Logf("%d writes failed during the election", failed)
}

// TestJetStreamUnreachable: with the JetStream server down, writes fail
// with engine.ErrUnavailable and local reads and watches go on; once the
// servers are back, writes work again and the watch sees them.
func TestJetStreamUnreachable(t *testing.T) {
	ctx := context.Background()
	c, nodes := startNodesOver(t, 1, 1)
	n := nodes[0]
	if _, _, err := n.e.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.e.Register(ctx, engine.RegisterRequest{Session: "s", Name: "x", Type: engine.TypeInteger, Value: engine.Integer(1)}); err != nil {
		t.Fatal(err)
	}
	sub, err := n.e.Watch(ctx, engine.WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	c.Kill(0)
	_, err = n.e.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(2)})
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("set with JetStream down: %v, want ErrUnavailable", err)
	}
	if v, err := n.e.Get(ctx, "s", "x"); err != nil || v.Value.Integer() != 1 {
		t.Fatalf("local read with JetStream down: %v, %v", v, err)
	}
	c.Restart(0)
	deadline := time.Now().Add(recoveryBound)
	for {
		_, err := n.e.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(3)})
		if err == nil {
			break
		}
		if !errors.Is(err, engine.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("set after JetStream is back: %v", err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.l().Sync(sctx, n.e); err != nil {
		t.Fatal(err)
	}
	if v, err := n.e.Get(ctx, "s", "x"); err != nil || v.Value.Integer() != 3 {
		t.Fatalf("after recovery: %v, %v", v, err)
	}
	// The watch opened before the outage went on through it, and has the
	// write made after.
	for {
		ev, err := sub.Next(sctx)
		if err != nil {
			t.Fatalf("the watch across the outage: %v", err)
		}
		if ev.Type == engine.EventValueChange {
			if ev.Variable.Value.Integer() != 3 {
				t.Fatalf("the watch saw %v, want the write after the outage", ev.Variable.Value)
			}
			break
		}
	}
}

// TestReadyOnlyOnceCaughtUp: a node joining a stream that holds writes is
// not ready (serve keeps health NOT_SERVING) until it has applied them
// all.
func TestReadyOnlyOnceCaughtUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, nodes := startNodesOver(t, 1, 1)
	w := nodes[0]
	if _, _, err := w.e.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.e.Register(ctx, engine.RegisterRequest{Session: "s", Name: "x", Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := w.e.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	end, err := w.Log.LastSequence(ctx)
	if err != nil {
		t.Fatal(err)
	}

	l, err := Open(ctx, Config{URL: c.URL()})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(engine.Config{Log: l})
	defer func() { l.Close(); e.Close() }()
	l.follow.lag.Store(true) // it cannot apply anything yet
	if err := l.Follow(ctx, e); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Ready():
		t.Fatalf("ready at position %d of %d", e.Applied(), end)
	case <-time.After(200 * time.Millisecond):
	}
	l.follow.lag.Store(false)
	select {
	case <-l.Ready():
		if got := e.Applied(); got < end {
			t.Fatalf("ready at position %d of %d", got, end)
		}
	case <-ctx.Done():
		t.Fatal("never ready")
	}
	v, err := e.Get(ctx, "s", "x")
	if err != nil || v.Version != 51 {
		t.Fatalf("the joined node has %v, %v", v, err)
	}
}
