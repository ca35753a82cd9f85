package journal

import (
	"io"
	"sync"

	"github.com/hashicorp/raft-wal/types"
)

// readAhead serves the small ReadAts raft-wal makes (a frame header, then
// the record, then an index entry: three preads per record at replay)
// from a few windows filled by one pread each. Replay reads segments in
// order, so nearly every read hits a window: a start with 1M records in
// the log makes a few hundred preads instead of millions.
type readAhead struct {
	f    io.ReaderAt
	mu   sync.Mutex
	win  [4]window
	tick uint64
}

type window struct {
	off  int64
	buf  []byte
	n    int // valid bytes in buf
	used uint64
}

const windowSize = 256 << 10

func (r *readAhead) ReadAt(p []byte, off int64) (int, error) {
	if len(p) > windowSize/4 {
		return r.f.ReadAt(p, off)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tick++
	end := off + int64(len(p))
	for i := range r.win {
		w := &r.win[i]
		if w.n > 0 && off >= w.off && end <= w.off+int64(w.n) {
			w.used = r.tick
			return copy(p, w.buf[off-w.off:]), nil
		}
	}
	w := &r.win[0]
	for i := range r.win {
		if r.win[i].used < w.used {
			w = &r.win[i]
		}
	}
	if w.buf == nil {
		w.buf = make([]byte, windowSize)
	}
	n, err := r.f.ReadAt(w.buf, off)
	if err != nil && err != io.EOF {
		w.n = 0
		return 0, err
	}
	w.off, w.n, w.used = off, n, r.tick
	if n < len(p) {
		return copy(p, w.buf[:n]), io.EOF
	}
	return copy(p, w.buf[:len(p)]), nil
}

// invalidate forgets the windows that overlap a write of n bytes at off.
func (r *readAhead) invalidate(off int64, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.win {
		w := &r.win[i]
		if w.n > 0 && off < w.off+int64(w.n) && w.off < off+int64(n) {
			w.n = 0
		}
	}
}

// readerFile is a sealed segment opened for reading, through a readAhead.
type readerFile struct {
	readAhead
	c io.Closer
}

func (r *readerFile) Close() error { return r.c.Close() }

func (f *syncFS) OpenReader(dir, name string) (types.ReadableFile, error) {
	rf, err := f.VFS.OpenReader(dir, name)
	if err != nil {
		return nil, err
	}
	return &readerFile{readAhead: readAhead{f: rf}, c: rf}, nil
}
