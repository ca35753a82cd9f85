package journal

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft-wal/types"

	"github.com/varwatch/varwatch/engine"
)

// faultyFS fails every segment write and sync while full is set, as a full
// disk does; with syncOnly, only syncs fail (the write reached the page
// cache).
type faultyFS struct {
	types.VFS
	full     *atomic.Bool
	syncOnly bool
}

func (f faultyFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	wf, err := f.VFS.Create(dir, name, size)
	return faultyFile{wf, f.full, f.syncOnly}, err
}

func (f faultyFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	wf, err := f.VFS.OpenWriter(dir, name)
	return faultyFile{wf, f.full, f.syncOnly}, err
}

type faultyFile struct {
	types.WritableFile
	full     *atomic.Bool
	syncOnly bool
}

func (f faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if f.full.Load() && !f.syncOnly {
		return 0, syscall.ENOSPC
	}
	return f.WritableFile.WriteAt(p, off)
}

func (f faultyFile) Sync() error {
	if f.full.Load() {
		return syscall.ENOSPC
	}
	return f.WritableFile.Sync()
}

// When the disk fills up, the write being logged fails with
// ErrUnavailable wrapping ENOSPC and no watcher sees it; reads and watch
// resumes go on at the durable state while writes fail; when space is
// back, writes are taken again; and a restart has every acknowledged write
// and none of the failed ones.
func TestDiskFullDegradesThenRecovers(t *testing.T) {
	dir := t.TempDir()
	full := &atomic.Bool{}
	j, err := Open(dir, Options{wrapFS: func(v types.VFS) types.VFS { return faultyFS{VFS: v, full: full} }})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Open(engine.Config{Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := eng.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Register(ctx, engine.RegisterRequest{Session: "s", Name: "x", Type: engine.TypeInteger, Value: engine.Integer(1)}); err != nil {
		t.Fatal(err)
	}
	acked, err := eng.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(2)})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := eng.Watch(ctx, engine.WatchRequest{Session: "s", Variables: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}

	full.Store(true)
	if _, err := eng.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(3)}); !errors.Is(err, engine.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("set on a full disk: %v, want ErrUnavailable wrapping ENOSPC", err)
	}
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			if !errors.Is(err, engine.ErrUnavailable) {
				t.Fatalf("watch ended with %v, want ErrUnavailable", err)
			}
			break
		}
		if ev.Type == engine.EventValueChange {
			t.Fatalf("the watcher saw a change the log did not take: %+v", ev)
		}
	}
	if v, err := eng.Get(ctx, "s", "x"); err != nil || v.Value.Integer() != 2 {
		t.Fatalf("read on a full disk: %v, %v; want the durable value 2", v, err)
	}
	resumed, err := eng.Watch(ctx, engine.WatchRequest{Session: "s", Variables: []string{"x"}, Resume: true, StartRevision: acked.Revision})
	if err != nil {
		t.Fatalf("resume on a full disk: %v", err)
	}
	defer resumed.Close()
	if _, err := eng.Register(ctx, engine.RegisterRequest{Session: "s", Name: "y", Type: engine.TypeInteger, Value: engine.Integer(1)}); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("register on a full disk: %v, want ErrUnavailable", err)
	}

	full.Store(false) // the operator freed space
	var res engine.SetResult
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err = eng.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(4)})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes did not come back within 10s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if res.Revision != acked.Revision+1 {
		t.Fatalf("first write after recovery at revision %d, want %d", res.Revision, acked.Revision+1)
	}
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if ev, err := resumed.Next(ectx); err != nil || ev.Revision != res.Revision || ev.Variable.Value.Integer() != 4 {
		t.Fatalf("resumed watch: %+v, %v; want 4 at revision %d", ev, err, res.Revision)
	}
	_ = eng.Close()
	_ = j.Close()

	j, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	eng, err = engine.Open(engine.Config{Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	v, err := eng.Get(ctx, "s", "x")
	if err != nil || v.Value.Integer() != 4 || v.ModRevision != res.Revision {
		t.Fatalf("after restart x is %v at %d (%v), want 4 at %d", v.Value, v.ModRevision, err, res.Revision)
	}
	if _, err := eng.Get(ctx, "s", "y"); !errors.Is(err, engine.ErrVariableNotFound) {
		t.Fatalf("the refused registration exists after restart: %v", err)
	}
}

// A failed fsync after a complete write: the batch is in the log after all.
// Its writer was told UNAVAILABLE (it may or may not have applied); the
// reloaded state has it, and revisions go on after it without a hole.
func TestFailedSyncAfterWriteKeepsALandedBatch(t *testing.T) {
	dir := t.TempDir()
	failSync := &atomic.Bool{}
	j, err := Open(dir, Options{wrapFS: func(v types.VFS) types.VFS { return faultyFS{VFS: v, full: failSync, syncOnly: true} }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	eng, err := engine.Open(engine.Config{Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	if _, _, err := eng.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	reg, err := eng.Register(ctx, engine.RegisterRequest{Session: "s", Name: "x", Type: engine.TypeInteger, Value: engine.Integer(1)})
	if err != nil {
		t.Fatal(err)
	}
	failSync.Store(true)
	if _, err := eng.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(2)}); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("set whose fsync fails: %v, want ErrUnavailable", err)
	}
	v, err := eng.Get(ctx, "s", "x")
	if err != nil || v.Value.Integer() != 2 || v.ModRevision != reg.Revision+1 {
		t.Fatalf("after the failed fsync x is %v at %d (%v); the batch reached the log, want 2 at %d", v.Value, v.ModRevision, err, reg.Revision+1)
	}
	failSync.Store(false)
	var res engine.SetResult
	deadline := time.Now().Add(10 * time.Second)
	for {
		if res, err = eng.Set(ctx, engine.SetRequest{Session: "s", Variable: "x", Value: engine.Integer(3)}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes did not come back within 10s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if res.Revision != reg.Revision+2 {
		t.Fatalf("first write after recovery at revision %d, want %d", res.Revision, reg.Revision+2)
	}
}
