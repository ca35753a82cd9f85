package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A snapshot file is the engine's encoding of its state followed by a
// trailer: the body's length, its CRC-32C, and snapMagic. It is written to
// a temporary file, fsynced, renamed into place and the directory fsynced,
// so a crash leaves either the old snapshot or the new one, never half.
const (
	snapPrefix  = "snapshot-"
	snapSuffix  = ".snap"
	snapMagic   = "VWSNAP01"
	trailerSize = 8 + 4 + len(snapMagic)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func snapName(through uint64) string {
	return fmt.Sprintf("%s%020d%s", snapPrefix, through, snapSuffix)
}

// snapshots returns the indexes of the snapshot files in dir, newest first.
func (j *Journal) snapshots() ([]uint64, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, err
	}
	var idx []uint64
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, snapPrefix) || !strings.HasSuffix(n, snapSuffix) {
			continue
		}
		i, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, snapPrefix), snapSuffix), 10, 64)
		if err == nil {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	slices.Reverse(idx)
	return idx, nil
}

// loadSnapshot restores the newest snapshot and returns the index of the
// last record it covers (0 without one). Temporary files of snapshots a
// crash interrupted are removed.
func (j *Journal) loadSnapshot(restore func(io.Reader) error) (uint64, error) {
	if tmps, err := filepath.Glob(filepath.Join(j.dir, snapPrefix+"*"+snapSuffix+".tmp")); err == nil {
		for _, tmp := range tmps {
			_ = os.Remove(tmp)
		}
	}
	idx, err := j.snapshots()
	if err != nil || len(idx) == 0 {
		return 0, err
	}
	path := filepath.Join(j.dir, snapName(idx[0]))
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	body, err := checkSnapshot(b)
	if err == nil {
		err = restore(bytes.NewReader(body))
	}
	if err != nil {
		return 0, fmt.Errorf("journal: snapshot %s cannot be loaded: %w; the log behind it is truncated, so the server refuses to start. "+
			"Restore the directory from a backup", path, err)
	}
	return idx[0], nil
}

func checkSnapshot(b []byte) ([]byte, error) {
	if len(b) < trailerSize || string(b[len(b)-len(snapMagic):]) != snapMagic {
		return nil, errors.New("no snapshot trailer (truncated file?)")
	}
	t := b[len(b)-trailerSize:]
	n := binary.LittleEndian.Uint64(t)
	if n != uint64(len(b)-trailerSize) {
		return nil, fmt.Errorf("body is %d bytes, trailer says %d", len(b)-trailerSize, n)
	}
	body := b[:n]
	if want, got := binary.LittleEndian.Uint32(t[8:]), crc32.Checksum(body, castagnoli); want != got {
		return nil, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	return body, nil
}

// Snapshot implements engine.Journal.
func (j *Journal) Snapshot(write func(io.Writer) error, wait bool) error {
	through := j.next - 1
	if wait {
		j.snaps.Wait()
		return j.writeSnapshot(through, write)
	}
	if !j.snapping.CompareAndSwap(false, true) {
		return nil
	}
	j.sinceRecords, j.sinceBytes = 0, 0
	j.snaps.Add(1)
	go func() {
		defer j.snaps.Done()
		defer j.snapping.Store(false)
		if err := j.writeSnapshot(through, write); err != nil {
			j.opts.Logf("journal: snapshot at record %d failed: %v", through, err)
		}
	}()
	return nil
}

// writeSnapshot writes the snapshot covering records up to through, then
// drops older snapshots and those records.
func (j *Journal) writeSnapshot(through uint64, write func(io.Writer) error) error {
	final := filepath.Join(j.dir, snapName(through))
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	cw := &crcWriter{w: f, h: crc32.New(castagnoli)}
	err = write(cw)
	if err == nil {
		var t [trailerSize]byte
		binary.LittleEndian.PutUint64(t[:], uint64(cw.n))
		binary.LittleEndian.PutUint32(t[8:], cw.h.Sum32())
		copy(t[12:], snapMagic)
		_, err = f.Write(t[:])
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	// The new snapshot is durable: what it covers can go.
	if j.resetLog {
		if err := j.moveLogAside(); err != nil {
			return err
		}
	}
	idx, err := j.snapshots()
	if err != nil {
		return err
	}
	for _, i := range idx {
		if i < through {
			_ = os.Remove(filepath.Join(j.dir, snapName(i)))
		}
	}
	first, err := j.log.FirstIndex()
	if err != nil || first == 0 || first > through {
		return err
	}
	return j.log.DeleteRange(first, through)
}

// moveLogAside replaces the log with an empty one that continues after the
// snapshot just written, keeping the old one as wal.dropped-<time> for
// inspection.
func (j *Journal) moveLogAside() error {
	if err := j.closeLog(); err != nil {
		return err
	}
	waldir := filepath.Join(j.dir, "wal")
	aside := waldir + ".dropped-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(waldir, aside); err != nil {
		return fmt.Errorf("journal: moving the damaged log aside: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		return err
	}
	j.opts.Logf("journal: the damaged log is kept in %s", aside)
	j.resetLog = false
	return j.openLog()
}

type crcWriter struct {
	w io.Writer
	h hash.Hash32
	n int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// locate names the segment file holding record index, and the offset of
// data in it when it can be found, for an error message.
func (j *Journal) locate(index uint64, data []byte) string {
	waldir := filepath.Join(j.dir, "wal")
	ents, err := os.ReadDir(waldir)
	if err != nil {
		return "segment unknown"
	}
	var best string
	var bestBase uint64
	for _, e := range ents {
		base, _, ok := strings.Cut(e.Name(), "-")
		b, err := strconv.ParseUint(base, 10, 64)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".wal") || b > index || (best != "" && b < bestBase) {
			continue
		}
		best, bestBase = e.Name(), b
	}
	if best == "" {
		return "segment unknown"
	}
	path := filepath.Join(waldir, best)
	if len(data) > 0 {
		if b, err := os.ReadFile(path); err == nil {
			if off := bytes.Index(b, data); off >= 0 {
				return fmt.Sprintf("file %s, byte offset %d", path, off)
			}
		}
	}
	return "file " + path
}
