package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/engine"
)

// startSnapshotting starts a node connected to url that snapshots every
// every positions and keeps kept snapshots, and waits until it has
// caught up; it stops when the test ends.
func startSnapshotting(t *testing.T, url string, every, kept int, ecfg engine.Config) *node {
	t.Helper()
	return startNodeWith(t, Config{URL: url, SnapshotEvery: every, SnapshotsKept: kept}, ecfg)
}

// fastSnapshots makes nodes store their snapshots without a pause, for
// the test.
func fastSnapshots(t *testing.T) {
	old := snapshotJitter
	snapshotJitter = time.Millisecond
	t.Cleanup(func() { snapshotJitter = old })
}

// writeSets makes a session with one variable on n, if it has none yet,
// and sets it k times.
func writeSets(t *testing.T, n *node, k int) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := n.e.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.e.Get(ctx, "s", "x"); errors.Is(err, engine.ErrVariableNotFound) {
		if _, err := n.e.Register(ctx, engine.RegisterRequest{Session: "s", Name: "x", Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range k {
		if _, err := n.e.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
}

// waitSnapshots waits until the store holds a snapshot at or after pos,
// and returns the positions it holds.
func waitSnapshots(t *testing.T, l *Log, pos uint64) []uint64 {
	t.Helper()
	// A liveness bound: one listing can stall on a loaded machine (a
	// fresh clone's CI run had one take the whole bound), so each try has
	// its own, and the tries go on for a minute.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		try, cancelTry := context.WithTimeout(ctx, 2*time.Second)
		got, err := l.listSnapshots(try)
		cancelTry()
		if err == nil && len(got) > 0 && got[len(got)-1] >= pos {
			return got
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no snapshot at or after %d (have %v, %v)", pos, got, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sameSnapshots syncs every node with the stream, then compares their
// snapshots at one position, byte for byte.
func sameSnapshots(t *testing.T, nodes []*node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for try := 0; ; try++ {
		var want []byte
		var at uint64
		same := true
		for i, n := range nodes {
			if err := n.Sync(ctx); err != nil {
				t.Fatalf("node %d: %v", i, err)
			}
			s, err := n.e.CaptureLogged(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := s.Encode(&b); err != nil {
				t.Fatal(err)
			}
			switch {
			case i == 0:
				want, at = b.Bytes(), s.Position()
			case s.Position() != at:
				same = false // something was proposed meanwhile: again
			case !bytes.Equal(b.Bytes(), want):
				t.Fatalf("node %d's snapshot at %d differs from node 0's (%d bytes vs %d)", i, at, b.Len(), len(want))
			}
		}
		if same {
			return
		}
		if try == 20 {
			t.Fatal("the nodes never stood at one position")
		}
	}
}

// A node started after K writes and a snapshot loads the snapshot, replays
// only the stream's tail after it, and then holds what the others hold.
func TestStartFromSnapshot(t *testing.T) {
	fastSnapshots(t)
	const every = 25
	c := natstest.Start(t, 1)
	a := startSnapshotting(t, c.URL(), every, 2, engine.Config{})
	b := startSnapshotting(t, c.URL(), every, 2, engine.Config{})
	writeSets(t, a, 120)
	snaps := waitSnapshots(t, a.Log, 100)
	writeSets(t, b, 7) // a tail after the snapshot
	ctx := context.Background()
	end, err := a.Log.LastSequence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newest := waitSnapshots(t, a.Log, 100)
	snap := newest[len(newest)-1]

	j := startSnapshotting(t, c.URL(), every, 2, engine.Config{})
	if handed := j.Log.follow.handed.Load(); handed > end-snap {
		t.Errorf("the joining node applied %d entries; the tail after the snapshot at %d of %d is %d", handed, snap, end, end-snap)
	}
	t.Logf("snapshots %v; the joining node applied %d of %d entries", snaps, j.Log.follow.handed.Load(), end)
	v, err := j.e.Get(ctx, "s", "x")
	if err != nil || !v.Value.Equal(engine.Integer(6)) {
		t.Fatalf("the joining node has %v, %v", v, err)
	}
	writeSets(t, j, 3) // it writes too
	sameSnapshots(t, []*node{a, b, j})
}

// The stream is trimmed up to the oldest snapshot kept: a node starting
// still gets everything; a node behind the trim stops and says so; a
// resume older than a node's history is told it is compacted, on a node
// started from a snapshot as on the others.
func TestStreamTrimmedBehindSnapshots(t *testing.T) {
	fastSnapshots(t)
	const every, kept = 10, 2
	ecfg := engine.Config{HistoryRevisions: 20}
	c := natstest.Start(t, 1)
	a := startSnapshotting(t, c.URL(), every, kept, ecfg)
	writeSets(t, a, 100)
	ctx := context.Background()
	var snaps []uint64
	var first uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		snaps = waitSnapshots(t, a.Log, 100)
		var err error
		if first, err = a.Log.firstSequence(ctx); err != nil {
			t.Fatal(err)
		}
		if len(snaps) == kept && first == snaps[0]+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshots %v, stream from %d: want %d snapshots and the stream from after the oldest", snaps, first, kept)
		}
		time.Sleep(10 * time.Millisecond)
	}

	j := startSnapshotting(t, c.URL(), every, kept, ecfg)
	sameSnapshots(t, []*node{a, j})
	for i, n := range []*node{a, j} {
		_, err := n.e.Watch(ctx, engine.WatchRequest{Session: "s", Resume: true, StartRevision: 1})
		if !errors.Is(err, engine.ErrCompacted) {
			t.Errorf("node %d: a resume from revision 1 of 102: %v, want it compacted", i, err)
		}
		sub, err := n.e.Watch(ctx, engine.WatchRequest{Session: "s", Resume: true, StartRevision: 95})
		if err != nil {
			t.Fatalf("node %d: a resume within the history: %v", i, err)
		}
		sub.Close()
	}

	// An engine at position 0 stands for a node that lagged behind the
	// trim: the stream after it is gone.
	l, err := Open(ctx, Config{URL: c.URL(), SnapshotEvery: every, SnapshotsKept: kept})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(engine.Config{Log: l})
	defer func() { l.Close(); e.Close() }()
	if err := l.Follow(ctx, e); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Behind():
	case <-time.After(10 * time.Second):
		t.Fatalf("a node behind the trim did not stop (applied %d)", e.Applied())
	}
	if e.Applied() != 0 {
		t.Fatalf("a node behind the trim applied up to %d past the hole", e.Applied())
	}
	select {
	case <-l.Ready():
		t.Fatal("a node behind the trim says it is caught up")
	default:
	}
}
