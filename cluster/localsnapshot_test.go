package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/engine"
)

// startInDir starts a node over stream (its subject: stream.log; "": the
// default stream), keeping its snapshot in dir, and waits until it has
// caught up. The test closes it.
func startInDir(t *testing.T, url, stream, dir string) *node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := Config{URL: url, Stream: stream, PublishTimeout: 2 * time.Second, SnapshotEvery: 20, Dir: dir}
	if stream != "" {
		cfg.Subject = stream + ".log"
	}
	n, err := Start(ctx, cfg, engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.Ready():
	case <-ctx.Done():
		t.Fatal("the node did not catch up")
	}
	return &node{n, n.Engine}
}

// A node with a directory saves its snapshot when it closes and restarts
// from it, replaying only what was written while it was down; unless
// JetStream has a newer one, or the file is of another stream.
func TestStartFromLocalSnapshot(t *testing.T) {
	fastSnapshots(t)
	ctx := context.Background()
	c := natstest.Start(t, 1)
	dir := t.TempDir()
	a := startSnapshotting(t, c.URL(), 20, 2, engine.Config{})
	b := startInDir(t, c.URL(), "", dir)
	writeSets(t, a, 50)
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	saved := b.e.Applied()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	writeSets(t, a, 5)
	newest := waitSnapshots(t, a.Log, 40)
	if newest[len(newest)-1] >= saved {
		t.Fatalf("JetStream's newest snapshot is at %d, the local one at %d: the test needs the local one newer", newest[len(newest)-1], saved)
	}

	b = startInDir(t, c.URL(), "", dir)
	end, err := a.Log.LastSequence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if from, handed := b.Log.follow.from, b.Log.follow.handed.Load(); from != saved || handed > end-saved {
		t.Errorf("restarted from %d having applied %d entries; want from the local snapshot at %d, the %d entries after it", from, handed, saved, end-saved)
	}
	sameSnapshots(t, []*node{a, b})
	saved = b.e.Applied()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// JetStream's snapshot is newer now: it wins.
	writeSets(t, a, 45)
	if end, err = a.Log.LastSequence(ctx); err != nil {
		t.Fatal(err)
	}
	want := end / 20 * 20 // the last snapshot due; nothing is written after it
	waitSnapshots(t, a.Log, want)
	b = startInDir(t, c.URL(), "", dir)
	if from := b.Log.follow.from; from != want {
		t.Errorf("restarted from %d; want from JetStream's newest snapshot at %d (the local one is at %d)", from, want, saved)
	}
	sameSnapshots(t, []*node{a, b})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Another stream's node with the same directory starts from its own
	// (empty) stream, not from this one's snapshot.
	o := startInDir(t, c.URL(), "OTHER", dir)
	defer o.Close()
	if from := o.Log.follow.from; from != 0 {
		t.Errorf("a node of another stream started from position %d of the local snapshot", from)
	}
	if ss, err := o.e.ListSessions(ctx); err != nil || len(ss) != 0 {
		t.Errorf("a node of another stream holds %v (%v)", ss, err)
	}
}
