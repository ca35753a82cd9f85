package cluster

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/engine"
)

// replayWriter is a session "s" with one integer variable "x" on a node,
// and what each of its sets was answered: value by revision.
type replayWriter struct {
	t      *testing.T
	n      *node
	inc    string
	values map[int64]int64
	next   int64
}

func newReplayWriter(t *testing.T, n *node) *replayWriter {
	t.Helper()
	ctx := context.Background()
	info, _, err := n.e.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.e.Register(ctx, engine.RegisterRequest{Session: "s", Name: "x", Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
		t.Fatal(err)
	}
	return &replayWriter{t: t, n: n, inc: info.Incarnation, values: map[int64]int64{}}
}

// setUntil sets x to new values until the node has applied the stream up
// to pos, and returns the last revision.
func (w *replayWriter) setUntil(pos uint64) int64 {
	w.t.Helper()
	var rev int64
	for w.n.e.Applied() < pos {
		w.next++
		res, err := w.n.e.Set(context.Background(), engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(w.next)})
		if err != nil {
			w.t.Fatal(err)
		}
		rev = res.Revision
		w.values[rev] = w.next
	}
	return rev
}

// nexter is a watch's stream of events (*engine.Subscription, *Replay).
type nexter interface {
	Next(ctx context.Context) (engine.Event, error)
}

// expectChanges reads value changes from w and checks they are exactly
// the revisions from+1 to to, in order, with the values written.
func expectChanges(t *testing.T, w nexter, values map[int64]int64, from, to int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for want := from + 1; want <= to; {
		ev, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for revision %d: %v", want, err)
		}
		if ev.Type != engine.EventValueChange {
			continue
		}
		if ev.Revision != want || ev.Variable.Value.Integer() != values[want] {
			t.Fatalf("got revision %d = %d, want revision %d = %d", ev.Revision, ev.Variable.Value.Integer(), want, values[want])
		}
		want++
	}
}

// startReplayNodes starts a JetStream server and two nodes that keep 4
// revisions of history, snapshot every 20 positions and keep 2: node b
// may lag 20 positions behind a before a trim leaves it behind, and the
// first snapshot is always stored (a node's snapshotter, idle, takes it at
// once; a later one may replace another not stored yet).
func startReplayNodes(t *testing.T) (*node, *node) {
	t.Helper()
	fastSnapshots(t)
	nats := natstest.Start(t, 1)
	ecfg := engine.Config{HistoryRevisions: 4}
	return startSnapshotting(t, nats.URL(), 20, 2, ecfg), startSnapshotting(t, nats.URL(), 20, 2, ecfg)
}

// waitTrimmed waits until the stream starts after pos.
func waitTrimmed(t *testing.T, l *Log, pos uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		first, err := l.firstSequence(ctx)
		if err == nil && first > pos {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the stream still starts at %d (%v), not after %d", first, err, pos)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// caughtUpWith waits until b has applied what a has.
func caughtUpWith(t *testing.T, b, a *node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.WaitApplied(ctx, a.e.Applied()); err != nil {
		select {
		case <-b.Behind():
			t.Fatalf("node b fell behind the stream's trim (at %d, a at %d)", b.e.Applied(), a.e.Applied())
		default:
		}
		t.Fatalf("node b at %d, a at %d: %v", b.e.Applied(), a.e.Applied(), err)
	}
}

// TestResumeOlderThanHistoryReplaysTheStream: a watcher on node a stops
// at revision R; while 4 revisions of history pass R by and the stream is
// trimmed behind two snapshots, it resumes on node b from R, which b's
// history no longer holds. It gets every change after R exactly once, in
// order, then the live ones. A resume from before the stream's first
// retained position is REVISION_COMPACTED (engine.ErrCompacted).
func TestResumeOlderThanHistoryReplaysTheStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := startReplayNodes(t)
	w := newReplayWriter(t, a)
	early := w.setUntil(3) // before the oldest snapshot that will be kept
	start := early
	sub, err := a.e.Watch(ctx, engine.WatchRequest{Session: "s", Resume: true, StartRevision: start, Incarnation: w.inc})
	if err != nil {
		t.Fatal(err)
	}
	r := w.setUntil(25) // after the snapshot at 20
	expectChanges(t, sub, w.values, start, r)
	sub.Close()

	w.setUntil(45)
	waitSnapshots(t, a.l(), 40)
	waitTrimmed(t, a.l(), 20)
	now := w.setUntil(47)
	caughtUpWith(t, b, a)

	resume := engine.WatchRequest{Session: "s", Resume: true, StartRevision: r, Incarnation: w.inc}
	if _, err := b.e.Watch(ctx, resume); !errors.Is(err, engine.ErrCompacted) {
		t.Fatalf("node b's history still holds revision %d (%v): the test needs it not to", r, err)
	}
	rw, err := b.Replay(ctx, resume)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if rw.Incarnation() != w.inc {
		t.Fatalf("incarnation %s, want %s", rw.Incarnation(), w.inc)
	}
	expectChanges(t, rw, w.values, r, now)
	later := w.setUntil(a.e.Applied() + 5)
	expectChanges(t, rw, w.values, now, later)
	if hb := rw.Heartbeat(time.Now()); hb.Revision != later {
		t.Errorf("heartbeat at %d after every change up to %d", hb.Revision, later)
	}

	old := engine.WatchRequest{Session: "s", Resume: true, StartRevision: early, Incarnation: w.inc}
	if _, err := b.Replay(ctx, old); !errors.Is(err, engine.ErrCompacted) {
		t.Fatalf("a resume from revision %d, before the stream's start: %v, want ErrCompacted", early, err)
	}
	other := resume
	other.Incarnation = "0000000000000000"
	if _, err := b.Replay(ctx, other); !errors.Is(err, engine.ErrIncarnationChanged) {
		t.Fatalf("a resume of another incarnation: %v, want ErrIncarnationChanged", err)
	}
}

// TestReplayCancelledLeaksNothing: a replay held back by its consumer
// (a backlog of one event) ends with its context, and Close leaves no
// goroutine behind and frees its slot.
func TestReplayCancelledLeaksNothing(t *testing.T) {
	oldBacklog, oldMax := replayBacklog, maxReplays
	replayBacklog, maxReplays = 1, 1
	t.Cleanup(func() { replayBacklog, maxReplays = oldBacklog, oldMax })
	a, b := startReplayNodes(t)
	w := newReplayWriter(t, a)
	r := w.setUntil(12)
	w.setUntil(28)
	// Node a's first store of a snapshot starts a goroutine its NATS
	// connection keeps: not the replays'.
	waitSnapshots(t, a.l(), 20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	caughtUpWith(t, b, a)
	resume := engine.WatchRequest{Session: "s", Resume: true, StartRevision: r, Incarnation: w.inc}

	before := runtime.NumGoroutine()
	for range 3 { // one slot: each must free it
		wctx, stop := context.WithCancel(ctx)
		rw, err := b.Replay(wctx, resume)
		if err != nil {
			t.Fatal(err)
		}
		expectChanges(t, rw, w.values, r, r+1)
		stop()
		rw.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left behind (%d before):\n%s", g-before, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestReplayOfASessionCreatedAfterTheSnapshot: the newest snapshot at or
// before the resume revision may hold no such session yet (nor the
// variable watched): the replay applies the stream from it until they
// exist, then watches. Here the snapshot at 20 holds only another session.
func TestReplayOfASessionCreatedAfterTheSnapshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := startReplayNodes(t)
	if _, _, err := a.e.CreateSession(ctx, engine.CreateSessionRequest{ID: "filler"}); err != nil {
		t.Fatal(err)
	}
	for a.e.Applied() < 22 {
		if _, err := a.e.Heartbeat(ctx, "filler"); err != nil {
			t.Fatal(err)
		}
	}
	waitSnapshots(t, a.l(), 20)
	w := newReplayWriter(t, a)
	reg, err := a.e.Register(ctx, engine.RegisterRequest{Session: "s", Name: "y", Type: engine.TypeInteger, Value: engine.Integer(0)})
	if err != nil {
		t.Fatal(err)
	}
	var ys []int64            // revisions of y's changes
	for i := range int64(3) { // up to position 31: no snapshot but the one at 20
		w.setUntil(a.e.Applied() + 1)
		res, err := a.e.Set(ctx, engine.SetRequest{Session: "s", Variable: "y", Value: engine.Integer(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		ys = append(ys, res.Revision)
		w.values[res.Revision] = i + 1
	}
	caughtUpWith(t, b, a)
	for _, tc := range []struct {
		name string
		req  engine.WatchRequest
		want []int64
	}{
		{"the session", engine.WatchRequest{Session: "s", Resume: true, StartRevision: reg.Revision, Incarnation: w.inc}, nil},
		{"a variable registered after the session", engine.WatchRequest{Session: "s", Variables: []string{"y"}, Resume: true, StartRevision: reg.Revision, Incarnation: w.inc}, ys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.e.Watch(ctx, tc.req); !errors.Is(err, engine.ErrCompacted) {
				t.Fatalf("node b's history still holds revision %d (%v): the test needs it not to", reg.Revision, err)
			}
			rw, err := b.Replay(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			defer rw.Close()
			if tc.want == nil {
				last, _ := b.e.GetSession(ctx, "s")
				expectChanges(t, rw, w.values, reg.Revision, last.Revision)
				return
			}
			for _, want := range tc.want {
				ev, err := rw.Next(ctx)
				for err == nil && ev.Type != engine.EventValueChange {
					ev, err = rw.Next(ctx)
				}
				if err != nil || ev.Revision != want || ev.Variable.Name != "y" || ev.Variable.Value.Integer() != w.values[want] {
					t.Fatalf("got %+v (%v), want y's change at revision %d", ev, err, want)
				}
			}
		})
	}
}
