package engine

import (
	"bytes"
	"context"
	"testing"
)

// A node restored from another's snapshot at position P, then fed the log
// from P on, holds the same state as the nodes that applied it all, even
// when a proposal lands twice on either side of P (the copy after P must
// be dropped, as the dedupe window restored says), and encodes the same
// snapshot at the same position.
func TestReplicatedSnapshotRestore(t *testing.T) {
	ctx := context.Background()
	l, nodes, _ := replicatedNodes(t, 1, Config{})
	a := nodes[0]
	if _, _, err := a.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeInteger, Value: Integer(0)}); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.twice = true // the next proposal lands at two positions
	l.mu.Unlock()
	if _, err := a.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(1)}); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, l, a)
	l.mu.Lock()
	entries := append([][]byte(nil), l.entries...)
	l.mu.Unlock()
	orig := uint64(len(entries) - 1) // the set's first copy; its second is next

	// b applies the log by hand up to the first copy and snapshots there.
	b := New(Config{Log: l})
	defer b.Close()
	for i := uint64(1); i <= orig; i++ {
		if err := b.ApplyLogged(i, entries[i-1]); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := b.CaptureLogged(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Position() != orig {
		t.Fatalf("snapshot at %d, want %d", snap.Position(), orig)
	}
	var enc bytes.Buffer
	if err := snap.Encode(&enc); err != nil {
		t.Fatal(err)
	}

	c, pos, err := NewFromLogged(Config{Log: l}, bytes.NewReader(enc.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if pos != orig || c.Applied() != orig {
		t.Fatalf("restored at %d (applied %d), want %d", pos, c.Applied(), orig)
	}
	f := l.follow(c) // redelivers from 1: what is at or below pos is skipped
	defer func() { close(f.stop); <-f.exited; c.Close() }()

	for i := range 20 {
		if _, err := a.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(10 + i))}); err != nil {
			t.Fatal(err)
		}
	}
	sameState(t, l, a, c)
	info, err := c.GetSession(ctx, "s")
	if err != nil || info.Revision != 22 {
		t.Fatalf("restored node at revision %d (%v), want 22: the duplicate after the snapshot applied", info.Revision, err)
	}

	// The same position captured on two nodes encodes the same bytes.
	s1, err := a.CaptureLogged(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.CaptureLogged(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var e1, e2 bytes.Buffer
	if err := s1.Encode(&e1); err != nil {
		t.Fatal(err)
	}
	if err := s2.Encode(&e2); err != nil {
		t.Fatal(err)
	}
	if s1.Position() != s2.Position() || !bytes.Equal(e1.Bytes(), e2.Bytes()) {
		t.Fatalf("snapshots at %d and %d differ (%d and %d bytes)", s1.Position(), s2.Position(), e1.Len(), e2.Len())
	}
}

func TestReplicatedSnapshotCorrupt(t *testing.T) {
	l := newFakeLog()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"wrong version", []byte{9, 0, 0}},
		{"truncated", []byte{loggedSnapshotVersion, 5, 3, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if e, _, err := NewFromLogged(Config{Log: l}, bytes.NewReader(tc.data)); err == nil {
				e.Close()
				t.Fatal("a broken snapshot started an engine")
			}
		})
	}
}
