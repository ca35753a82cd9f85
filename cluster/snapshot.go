package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/varwatch/varwatch/engine"
)

// Snapshots in JetStream, and trimming the stream behind them.
//
// Every SnapshotEvery stream positions, each node captures its engine at
// that very position (the follower asks right after handing the engine
// the entry, so every node captures the same position, and the same
// bytes) and one of them stores it in a JetStream object store beside the
// stream, replicated like it, named by its position. A node starting
// loads the newest snapshot that decodes and follows the stream from the
// position after it, so it replays only the tail.
//
// The store keeps the newest SnapshotsKept snapshots, and the stream is
// trimmed (purged) up to the oldest of them: a node that starts always
// finds a snapshot and the whole stream after it. A running node that
// lags so far behind that the stream was trimmed past what it has applied
// cannot go on (the entries it misses are gone): it stops following and
// says so (Node.Behind); restarted, it loads the newest snapshot. That is
// etcd's compaction: a watcher behind the compacted revision is told so
// and starts over, rather than the log being kept for the slowest.

// snapshotJitter bounds the random pause before a node stores a snapshot:
// every node captures the same one, and the pause lets one of them store
// it while the others find it there. A package variable so that tests can
// shrink it.
var snapshotJitter = time.Second

// snapshots is the follower's hand-off to the goroutine that stores
// snapshots and trims the stream.
type snapshots struct {
	store jetstream.ObjectStore
	// next holds the snapshot captured last and not yet stored; a newer
	// one replaces it (only the follower sends).
	next chan *engine.LoggedSnapshot
}

// snapshotName is the object a snapshot at pos is stored as: names sort
// in position order.
func snapshotName(pos uint64) string { return fmt.Sprintf("at-%020d", pos) }

func snapshotPosition(name string) (uint64, bool) {
	p, err := strconv.ParseUint(strings.TrimPrefix(name, "at-"), 10, 64)
	return p, err == nil && strings.HasPrefix(name, "at-")
}

// openSnapshots finds or creates the object store of the stream's
// snapshots, with the stream's replicas, retrying while JetStream forms.
func openSnapshots(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, cfg Config) (jetstream.ObjectStore, error) {
	sc := jetstream.ObjectStoreConfig{
		Bucket:      cfg.Stream + "_SNAPSHOTS",
		Description: "varwatch: snapshots of the engine at positions of stream " + cfg.Stream,
		Storage:     jetstream.FileStorage,
		Replicas:    stream.CachedInfo().Config.Replicas,
	}
	for {
		try, cancel := context.WithTimeout(ctx, 5*time.Second)
		store, err := js.ObjectStore(try, sc.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			store, err = js.CreateObjectStore(try, sc)
			if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				cancel()
				continue // another node created it first
			}
		}
		cancel()
		if err == nil {
			return store, nil
		}
		cfg.Logger.Debug("the snapshot store is not reachable yet", "error", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: snapshot store %s: %w (last error: %v)", sc.Bucket, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// listSnapshots returns the positions of the snapshots stored, oldest
// first.
func (l *Log) listSnapshots(ctx context.Context) ([]uint64, error) {
	objs, err := l.snaps.store.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: list snapshots: %w", err)
	}
	var pos []uint64
	for _, o := range objs {
		if p, ok := snapshotPosition(o.Name); ok {
			pos = append(pos, p)
		}
	}
	slices.Sort(pos)
	return pos, nil
}

// NewEngine starts the engine a node follows the stream with: from the
// local snapshot (Config.Dir) if it is at least as new as the newest in
// JetStream, else from the newest stored that loads (a newer one that
// does not is logged and passed over), else empty. ecfg.Log is set to l.
// It fails if the stream has been trimmed past every snapshot that loads.
func (l *Log) NewEngine(ctx context.Context, ecfg engine.Config) (*engine.Engine, error) {
	ecfg.Log = l
	// While JetStream elects the stream's leader, neither answers: ask
	// again, as Follow does, until ctx ends.
	var first uint64
	var pos []uint64
	err := l.retry(ctx, "the stream and its snapshots", func() (err error) {
		if first, err = l.firstSequence(ctx); err != nil {
			return err
		}
		try, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout)
		defer cancel()
		pos, err = l.listSnapshots(try)
		return err
	})
	if err != nil {
		return nil, err
	}
	local, err := l.readLocal()
	if err != nil {
		l.log.Warn("cannot read the local snapshot; starting from JetStream's", "error", err)
	}
	if local != nil {
		at, err := engine.LoggedSnapshotPosition(local)
		switch {
		case err != nil:
			l.log.Warn("the local snapshot does not load; starting from JetStream's", "error", err)
		case at+1 < first:
			l.log.Info("the local snapshot is older than the stream's start; starting from JetStream's", "position", at, "stream_starts_at", first)
		case len(pos) > 0 && at < pos[len(pos)-1]:
			l.log.Info("JetStream has a newer snapshot than the local one", "local", at, "jetstream", pos[len(pos)-1])
		default:
			e, at, err := engine.NewFromLogged(ecfg, bytes.NewReader(local))
			if err == nil {
				l.log.Info("loaded the local snapshot", "position", at, "bytes", len(local))
				return e, nil
			}
			l.log.Warn("the local snapshot does not load; starting from JetStream's", "error", err)
		}
	}
	for i := len(pos) - 1; i >= 0; i-- {
		if pos[i]+1 < first {
			break // older still: the stream after it is gone
		}
		data, err := l.readSnapshot(ctx, pos[i])
		if err != nil {
			l.log.Warn("cannot read a snapshot; trying an older one", "position", pos[i], "error", err)
			continue
		}
		e, at, err := engine.NewFromLogged(ecfg, bytes.NewReader(data))
		if err != nil {
			l.log.Warn("a snapshot does not load; trying an older one", "position", pos[i], "error", err)
			continue
		}
		l.log.Info("loaded a snapshot", "position", at, "bytes", len(data))
		return e, nil
	}
	if first > 1 {
		return nil, fmt.Errorf("cluster: the stream starts at %d and no snapshot at or after %d loads", first, first-1)
	}
	return engine.New(ecfg), nil
}

// snapshotReadRate is the slowest read of a snapshot a replay waits for,
// in bytes per second, on top of PublishTimeout.
const snapshotReadRate = 10 << 20

// readSnapshot reads the snapshot at p, failing with
// jetstream.ErrObjectNotFound if it is deleted before or while it is
// read. A read of an object deleted under it does not fail, it waits for
// chunks that are gone: so the read is bounded by the object's size, and
// one that fails is told apart from a deletion by asking again whether
// the object is there.
func (l *Log) readSnapshot(ctx context.Context, p uint64) ([]byte, error) {
	name := snapshotName(p)
	info, err := l.snapshotInfo(ctx, name)
	if err != nil {
		return nil, err
	}
	try, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout+time.Duration(info.Size)*time.Second/snapshotReadRate)
	defer cancel()
	data, err := l.snaps.store.GetBytes(try, name)
	if err == nil || ctx.Err() != nil {
		return data, err
	}
	if _, gone := l.snapshotInfo(ctx, name); errors.Is(gone, jetstream.ErrObjectNotFound) {
		return nil, gone
	}
	return nil, err
}

// snapshotInfo asks the object store about the snapshot called name.
func (l *Log) snapshotInfo(ctx context.Context, name string) (*jetstream.ObjectInfo, error) {
	try, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout)
	defer cancel()
	return l.snaps.store.GetInfo(try, name)
}

// retry calls f until it succeeds or ctx ends.
func (l *Log) retry(ctx context.Context, what string, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		l.log.Debug("cannot read yet", "what", what, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// firstSequence asks the stream where it starts (after a trim: the
// position after the snapshot it was trimmed to).
func (l *Log) firstSequence(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("cluster: stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		return info.State.LastSeq + 1, nil
	}
	return info.State.FirstSeq, nil
}

// snapshotDue reports whether the entry at seq, just handed to the
// engine, is where a snapshot is taken. Every node decides it alike.
func (l *Log) snapshotDue(seq uint64) bool {
	every := uint64(l.cfg.SnapshotEvery)
	return l.cfg.SnapshotEvery > 0 && seq%every == 0
}

// offer hands a captured snapshot to the snapshotter, replacing one it has
// not taken yet. Only the follower calls it, so the send cannot block.
func (l *Log) offer(s *engine.LoggedSnapshot) {
	select {
	case l.snaps.next <- s:
		return
	default:
	}
	select {
	case <-l.snaps.next:
	default:
	}
	l.snaps.next <- s
}

// snapshotter stores what the follower captures and trims the stream
// behind the snapshots kept, until Close.
func (l *Log) snapshotter() {
	defer l.wg.Done()
	for {
		var s *engine.LoggedSnapshot
		select {
		case s = <-l.snaps.next:
		case <-l.ctx.Done():
			return
		}
		select {
		case <-time.After(rand.N(snapshotJitter + 1)):
		case <-l.ctx.Done():
			return
		}
		if err := l.storeSnapshot(s); err != nil {
			l.log.Warn("storing a snapshot failed; the next one will be tried", "position", s.Position(), "error", err)
			continue
		}
		if err := l.trim(); err != nil {
			l.log.Warn("trimming the stream failed; the next snapshot will try again", "error", err)
		}
	}
}

// storeSnapshot writes s to Config.Dir, if set, and stores it in
// JetStream unless a node has already.
func (l *Log) storeSnapshot(s *engine.LoggedSnapshot) error {
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	var buf bytes.Buffer
	encode := func() error {
		if buf.Len() > 0 {
			return nil
		}
		return s.Encode(&buf)
	}
	if l.cfg.Dir != "" {
		if err := encode(); err != nil {
			return err
		}
		if err := l.writeLocal(buf.Bytes()); err != nil {
			l.log.Warn("writing the local snapshot failed", "position", s.Position(), "error", err)
		}
	}
	name := snapshotName(s.Position())
	if _, err := l.snaps.store.GetInfo(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return err
	}
	if err := encode(); err != nil {
		return err
	}
	size := buf.Len()
	if _, err := l.snaps.store.Put(ctx, jetstream.ObjectMeta{Name: name}, bytes.NewReader(buf.Bytes())); err != nil {
		return err
	}
	l.log.Info("stored a snapshot", "position", s.Position(), "bytes", size)
	return nil
}

// trim deletes all but the newest SnapshotsKept snapshots and purges the
// stream up to the oldest kept, whichever node does it first (deleting
// and purging are idempotent).
func (l *Log) trim() error {
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	pos, err := l.listSnapshots(ctx)
	if err != nil {
		return err
	}
	if len(pos) < l.cfg.SnapshotsKept {
		return nil // not yet as many as kept: keep the stream whole
	}
	drop, keep := pos[:len(pos)-l.cfg.SnapshotsKept], pos[len(pos)-l.cfg.SnapshotsKept:]
	for _, p := range drop {
		if err := l.snaps.store.Delete(ctx, snapshotName(p)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return err
		}
	}
	first, err := l.firstSequence(ctx)
	if err != nil {
		return err
	}
	if keep[0]+1 <= first {
		return nil
	}
	if err := l.stream.Purge(ctx, jetstream.WithPurgeSequence(keep[0]+1)); err != nil {
		return fmt.Errorf("cluster: purge the stream: %w", err)
	}
	l.log.Info("trimmed the stream", "before", keep[0]+1)
	return nil
}
