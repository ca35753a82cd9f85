package journal

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft-wal/types"
)

// FsyncMode says when appended records are forced to the disk.
type FsyncMode int

const (
	// FsyncPerBatch fsyncs every append (one engine batch) before the
	// engine acknowledges or publishes it: nothing acknowledged is lost,
	// even on power failure.
	FsyncPerBatch FsyncMode = iota
	// FsyncInterval fsyncs every Options.FsyncInterval: a crash of the
	// process loses nothing (the kernel has the writes), a power failure
	// loses at most the last interval of acknowledged writes.
	FsyncInterval
	// FsyncNone never fsyncs (the kernel writes back when it likes,
	// typically within 30s): a crash of the process loses nothing, a power
	// failure loses whatever the kernel had not written.
	FsyncNone
)

// ParseFsync reads a --fsync flag value.
func ParseFsync(s string) (FsyncMode, error) {
	switch s {
	case "batch", "per-batch":
		return FsyncPerBatch, nil
	case "interval":
		return FsyncInterval, nil
	case "none":
		return FsyncNone, nil
	}
	return 0, fmt.Errorf("unknown fsync mode %q (want batch, interval or none)", s)
}

func (m FsyncMode) String() string {
	return [...]string{"batch", "interval", "none"}[m]
}

// syncFS wraps raft-wal's file system so that the fsync mode decides what a
// segment's Sync does, and counts the real fsyncs.
type syncFS struct {
	types.VFS
	mode    FsyncMode
	syncs   atomic.Uint64
	syncDur atomic.Int64 // nanoseconds spent in those fsyncs

	mu    sync.Mutex
	files map[*syncFile]struct{} // open writable segments
}

func newSyncFS(vfs types.VFS, mode FsyncMode) *syncFS {
	return &syncFS{VFS: vfs, mode: mode, files: make(map[*syncFile]struct{})}
}

func (f *syncFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	wf, err := f.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	return f.track(wf), nil
}

func (f *syncFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	wf, err := f.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	return f.track(wf), nil
}

func (f *syncFS) track(wf types.WritableFile) *syncFile {
	sf := &syncFile{WritableFile: wf, fs: f}
	sf.ra.f = wf
	f.mu.Lock()
	f.files[sf] = struct{}{}
	f.mu.Unlock()
	return sf
}

// syncAll fsyncs every open segment (interval mode's tick, and Close).
func (f *syncFS) syncAll() error {
	f.mu.Lock()
	files := make([]*syncFile, 0, len(f.files))
	for sf := range f.files {
		files = append(files, sf)
	}
	f.mu.Unlock()
	var first error
	for _, sf := range files {
		if err := sf.realSync(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

type syncFile struct {
	types.WritableFile
	fs *syncFS
	ra readAhead // over WritableFile; writes invalidate it
}

func (s *syncFile) ReadAt(p []byte, off int64) (int, error) { return s.ra.ReadAt(p, off) }

// WriteAt drops the windows the write overlaps, before and after it, so
// that a window filled while the write was under way is not kept.
func (s *syncFile) WriteAt(p []byte, off int64) (int, error) {
	s.ra.invalidate(off, len(p))
	n, err := s.WritableFile.WriteAt(p, off)
	s.ra.invalidate(off, len(p))
	return n, err
}

// Sync is what raft-wal calls after writing a batch.
func (s *syncFile) Sync() error {
	if s.fs.mode == FsyncPerBatch {
		return s.realSync()
	}
	return nil
}

func (s *syncFile) realSync() error {
	start := time.Now()
	err := s.WritableFile.Sync()
	s.fs.syncDur.Add(int64(time.Since(start)))
	s.fs.syncs.Add(1)
	return err
}

func (s *syncFile) Close() error {
	s.fs.mu.Lock()
	delete(s.fs.files, s)
	s.fs.mu.Unlock()
	return s.WritableFile.Close()
}

// syncEvery is FsyncInterval's background fsync.
func (j *Journal) syncEvery(d time.Duration) {
	defer close(j.syncDone)
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := j.fs.syncAll(); err != nil {
				j.opts.Logf("journal: background fsync failed: %v", err)
			}
		case <-j.stopSync:
			return
		}
	}
}
