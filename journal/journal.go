// Package journal keeps a durable engine's data directory: a write-ahead
// log of the engine's records (hashicorp/raft-wal segments, one fsync per
// engine batch), snapshots of the whole state that the log is truncated
// behind, and a lock that keeps a second server out.
//
// Layout of a data directory:
//
//	LOCK                        flock'ed by the server that uses the directory
//	snapshot-<index>.snap       the state after log record <index>
//	wal/wal-meta.db             raft-wal's segment list (BoltDB)
//	wal/<base>-<id>.wal         log segments
//
// The engine encodes and checksums its records itself (engine.Journal);
// this package only orders, stores and returns them.
package journal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// Options tunes a Journal. Zero fields mean their defaults.
type Options struct {
	// Fsync is when appended records reach the disk (default PerBatch).
	Fsync FsyncMode
	// FsyncInterval is the period of FsyncInterval mode (default 100ms).
	FsyncInterval time.Duration
	// A snapshot is due after SnapshotRecords records (default 100000) or
	// SnapshotBytes bytes (default 64 MiB) appended since the last one.
	SnapshotRecords int
	SnapshotBytes   int64
	// SegmentBytes is the size of a log segment file (default 64 MiB).
	// Space is reclaimed a whole segment at a time.
	SegmentBytes int
	// TruncateCorrupt: when a record cannot be replayed, drop it and every
	// later record (with a warning) instead of refusing to start.
	TruncateCorrupt bool
	// Logf reports warnings (default: discard).
	Logf func(format string, args ...any)

	// wrapFS lets tests inject faults under raft-wal.
	wrapFS func(types.VFS) types.VFS
}

func (o Options) withDefaults() Options {
	if o.FsyncInterval <= 0 {
		o.FsyncInterval = 100 * time.Millisecond
	}
	if o.SnapshotRecords <= 0 {
		o.SnapshotRecords = 100000
	}
	if o.SnapshotBytes <= 0 {
		o.SnapshotBytes = 64 << 20
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 64 << 20
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Journal is an open data directory. It implements engine.Journal: Load,
// Append and Snapshot are called by one engine, Append and Snapshot from
// its loop goroutine.
type Journal struct {
	dir  string
	opts Options
	lock *os.File
	fs   *syncFS
	log  *wal.WAL
	meta *metadb.BoltMetaDB // raft-wal's Close leaves it open: ours to close

	// Owned by the engine loop (the caller of Append and Snapshot).
	next         uint64 // index of the next record
	sinceRecords int
	sinceBytes   int64

	// resetLog: the log holds records Load dropped; the start snapshot
	// must move it aside before anything is appended.
	resetLog bool

	snapping atomic.Bool    // a background snapshot is being written
	snaps    sync.WaitGroup // the background snapshot
	stopSync chan struct{}
	syncDone chan struct{}
}

// ErrLocked: another process has the data directory open.
var ErrLocked = errors.New("journal: data directory is in use by another process")

// Open locks dir (creating it if needed) and opens its log.
func Open(dir string, opts Options) (*Journal, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	lock, err := LockDir(dir)
	if err != nil {
		return nil, err
	}
	var vfs types.VFS = fs.New()
	if opts.wrapFS != nil {
		vfs = opts.wrapFS(vfs)
	}
	j := &Journal{dir: dir, opts: opts, lock: lock, fs: newSyncFS(vfs, opts.Fsync)}
	j.reportTornTail()
	if err := j.openLog(); err != nil {
		lock.Close()
		return nil, err
	}
	if opts.Fsync == FsyncInterval {
		j.stopSync, j.syncDone = make(chan struct{}), make(chan struct{})
		go j.syncEvery(opts.FsyncInterval)
	}
	return j, nil
}

// openLog opens the log segments in dir/wal.
func (j *Journal) openLog() error {
	waldir := filepath.Join(j.dir, "wal")
	if err := os.MkdirAll(waldir, 0o750); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.meta = &metadb.BoltMetaDB{}
	var err error
	j.log, err = wal.Open(waldir,
		wal.WithSegmentFiler(segment.NewFiler(waldir, j.fs)),
		wal.WithSegmentSize(j.opts.SegmentBytes),
		wal.WithMetaStore(j.meta),
		wal.WithLogger(hclog.NewNullLogger()))
	if err != nil {
		_ = j.meta.Close()
		return fmt.Errorf("journal: opening the log in %s: %w", waldir, err)
	}
	return nil
}

// closeLog closes the log and its meta database.
func (j *Journal) closeLog() error {
	err := j.log.Close()
	if cerr := j.meta.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close waits for a snapshot being written, syncs what is not yet synced,
// and releases the directory.
func (j *Journal) Close() error {
	j.snaps.Wait()
	if j.stopSync != nil {
		close(j.stopSync)
		<-j.syncDone
	}
	err := j.fs.syncAll()
	if cerr := j.closeLog(); err == nil {
		err = cerr
	}
	if cerr := j.lock.Close(); err == nil { // closing releases the flock
		err = cerr
	}
	return err
}

// Fsyncs returns how many times the log has been fsynced.
func (j *Journal) Fsyncs() uint64 { return j.fs.syncs.Load() }

// FsyncTime returns the time spent in those fsyncs, so that a benchmark
// can tell a slow disk from a slow engine.
func (j *Journal) FsyncTime() time.Duration { return time.Duration(j.fs.syncDur.Load()) }

// Load implements engine.Journal: the newest snapshot, then every record
// after it. A record that does not replay (a checksum mismatch, say) stops
// the load with an error naming its segment file and offset, unless
// TruncateCorrupt.
func (j *Journal) Load(restore func(io.Reader) error, replay func([]byte) error) error {
	through, err := j.loadSnapshot(restore)
	if err != nil {
		return err
	}
	first, err := j.log.FirstIndex()
	if err != nil {
		return err
	}
	last, err := j.log.LastIndex()
	if err != nil {
		return err
	}
	if last > 0 && first > through+1 {
		return fmt.Errorf("journal: the log in %s starts at record %d but the snapshot covers only records up to %d: records %d..%d are missing",
			j.dir, first, through, through+1, first-1)
	}
	for i := max(first, through+1); last > 0 && i <= last; i++ {
		var l raft.Log
		err := j.log.GetLog(i, &l)
		if err == nil {
			err = replay(l.Data)
		}
		if err == nil {
			continue
		}
		where := j.locate(i, l.Data)
		if !j.opts.TruncateCorrupt {
			return fmt.Errorf("journal: record %d (%s) cannot be replayed: %w; the server refuses to start rather than lose or invent changes. "+
				"Back up %s, then start with --truncate-corrupt to keep the state up to record %d and drop records %d..%d",
				i, where, err, j.dir, i-1, i, last)
		}
		j.opts.Logf("journal: WARNING: record %d (%s) cannot be replayed: %v; dropping records %d..%d as --truncate-corrupt asks: "+
			"the start snapshot will cover records up to %d, and the log will be moved aside", i, where, err, i, last, i-1)
		// raft-wal cannot truncate a tail durably (the segment it seals
		// has no index), so the start snapshot replaces the whole log.
		j.resetLog = true
		last = i - 1
		break
	}
	j.next = max(last, through) + 1
	return nil
}

// Reset implements engine.Journal: raft-wal's writer is not consistent
// after a failed write (it keeps the failed batch buffered), so the log is
// closed and opened again, which recovers its tail from the file.
func (j *Journal) Reset() (bool, error) {
	j.snaps.Wait() // a background snapshot uses the log
	_ = j.closeLog()
	if err := j.openLog(); err != nil {
		return false, err
	}
	last, err := j.log.LastIndex()
	if err != nil {
		return false, err
	}
	if last >= j.next { // the failed batch was committed after all
		j.next = last + 1
		return true, nil
	}
	return false, nil
}

// Append implements engine.Journal. One call is one raft-wal batch: one
// commit frame and, with FsyncPerBatch, one fsync.
func (j *Journal) Append(records [][]byte) (bool, error) {
	logs := make([]*raft.Log, len(records))
	entries := make([]raft.Log, len(records))
	for i, r := range records {
		entries[i] = raft.Log{Index: j.next + uint64(i), Type: raft.LogCommand, Data: r}
		logs[i] = &entries[i]
		j.sinceBytes += int64(len(r))
	}
	if err := j.log.StoreLogs(logs); err != nil {
		return false, err
	}
	j.next += uint64(len(records))
	j.sinceRecords += len(records)
	return j.sinceRecords >= j.opts.SnapshotRecords || j.sinceBytes >= j.opts.SnapshotBytes, nil
}
