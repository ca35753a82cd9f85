package journal

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rec is a test record: a CRC-32C of the payload, then the payload, like
// the engine's records, so replay can tell a damaged one.
func rec(i int) []byte {
	p := fmt.Appendf(nil, "record-%06d-%s", i, strings.Repeat("p", 40))
	return append(crcOf(p), p...)
}

func crcOf(p []byte) []byte {
	c := crc32.Checksum(p, castagnoli)
	return []byte{byte(c), byte(c >> 8), byte(c >> 16), byte(c >> 24)}
}

// collector replays records into a list, checking each one's CRC.
type collector struct{ got [][]byte }

func (c *collector) replay(r []byte) error {
	if len(r) < 4 || !bytes.Equal(crcOf(r[4:]), r[:4]) {
		return errors.New("checksum mismatch")
	}
	c.got = append(c.got, bytes.Clone(r))
	return nil
}

func noSnapshot(io.Reader) error { return errors.New("unexpected snapshot") }

func openT(t *testing.T, dir string, opts Options) *Journal {
	t.Helper()
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// appendBatches appends n batches of 3 records, numbered from first.
func appendBatches(t *testing.T, j *Journal, first, n int) {
	t.Helper()
	for b := range n {
		i := first + 3*b
		if _, err := j.Append([][]byte{rec(i), rec(i + 1), rec(i + 2)}); err != nil {
			t.Fatal(err)
		}
	}
}

func wantRecords(t *testing.T, got [][]byte, from, to int) {
	t.Helper()
	if len(got) != to-from+1 {
		t.Fatalf("replayed %d records, want %d..%d", len(got), from, to)
	}
	for k, r := range got {
		if !bytes.Equal(r, rec(from+k)) {
			t.Fatalf("record %d is %q, want %q", k, r, rec(from+k))
		}
	}
}

// tailSegment returns the path of the newest segment file and its data
// length (segments are preallocated: the rest is zeros).
func tailSegment(t *testing.T, dir string) (string, []byte, int) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if len(segs) == 0 {
		t.Fatal("no segment file")
	}
	path := segs[len(segs)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return path, b, end
}

// A batch torn by a crash (its commit frame half written) is cut off on
// the next start; every batch before it is there, and appends continue at
// the right index.
func TestTornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	if err := j.Load(noSnapshot, (&collector{}).replay); err != nil {
		t.Fatal(err)
	}
	appendBatches(t, j, 1, 10) // records 1..30
	j.Close()

	path, b, end := tailSegment(t, dir)
	for i := end - 6; i < end; i++ { // tear the last commit frame
		b[i] = 0
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}

	var warnings []string
	j = openT(t, dir, Options{Logf: func(f string, args ...any) { warnings = append(warnings, fmt.Sprintf(f, args...)) }})
	c := &collector{}
	if err := j.Load(noSnapshot, c.replay); err != nil {
		t.Fatalf("load after a torn tail: %v", err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], path) || !strings.Contains(warnings[0], "unfinished batch") {
		t.Fatalf("warnings after a torn tail: %q, want one naming %s", warnings, path)
	}
	wantRecords(t, c.got, 1, 27)
	appendBatches(t, j, 28, 1)
	j.Close()

	warnings = nil
	j = openT(t, dir, Options{Logf: func(f string, args ...any) { warnings = append(warnings, fmt.Sprintf(f, args...)) }})
	defer j.Close()
	c = &collector{}
	if err := j.Load(noSnapshot, c.replay); err != nil {
		t.Fatal(err)
	}
	wantRecords(t, c.got, 1, 30)
	if len(warnings) != 0 {
		t.Fatalf("warnings on a clean log: %q", warnings)
	}
}

// One flipped byte in a committed record refuses the start with a message
// naming the file and the offset; --truncate-corrupt keeps what is before.
func TestFlippedByteRefusesStart(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	if err := j.Load(noSnapshot, (&collector{}).replay); err != nil {
		t.Fatal(err)
	}
	appendBatches(t, j, 1, 10)
	j.Close()

	path, b, _ := tailSegment(t, dir)
	off := bytes.Index(b, rec(14)[4:])
	if off < 0 {
		t.Fatal("record 14 not found in the segment")
	}
	b[off+20] ^= 0x04
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}

	j = openT(t, dir, Options{})
	err := j.Load(noSnapshot, (&collector{}).replay)
	j.Close()
	if err == nil {
		t.Fatal("load of a log with a flipped byte succeeded")
	}
	for _, want := range []string{"record 14", path, "byte offset", "--truncate-corrupt"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	j = openT(t, dir, Options{TruncateCorrupt: true})
	c := &collector{}
	if err := j.Load(noSnapshot, c.replay); err != nil {
		t.Fatalf("load with TruncateCorrupt: %v", err)
	}
	wantRecords(t, c.got, 1, 13)
	// The engine snapshots right after Load: that replaces the damaged log.
	if err := j.Snapshot(func(w io.Writer) error { _, err := io.WriteString(w, "state@13"); return err }, true); err != nil {
		t.Fatal(err)
	}
	appendBatches(t, j, 14, 1)
	j.Close()
	if aside, _ := filepath.Glob(filepath.Join(dir, "wal.dropped-*")); len(aside) != 1 {
		t.Fatalf("damaged log kept as %v, want one wal.dropped-* directory", aside)
	}
	j = openT(t, dir, Options{})
	defer j.Close()
	c = &collector{}
	var state string
	err = j.Load(func(r io.Reader) error { b, err := io.ReadAll(r); state = string(b); return err }, c.replay)
	if err != nil {
		t.Fatal(err)
	}
	if state != "state@13" {
		t.Fatalf("restored %q, want state@13", state)
	}
	wantRecords(t, c.got, 14, 16)
}

// A second server on the same directory is refused.
func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	j.Close()
	j = openT(t, dir, Options{}) // released on Close
	j.Close()
}

// A snapshot covers every record appended before it; the next start
// restores it and replays only what came after, and the log behind it is
// gone (whole segments at a time).
func TestSnapshotTruncatesLog(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 32 << 10}
	j := openT(t, dir, opts)
	if err := j.Load(noSnapshot, (&collector{}).replay); err != nil {
		t.Fatal(err)
	}
	appendBatches(t, j, 1, 400) // 1200 records of ~60 bytes: several segments
	before, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err := j.Snapshot(func(w io.Writer) error { _, err := io.WriteString(w, "state@1200"); return err }, true); err != nil {
		t.Fatal(err)
	}
	appendBatches(t, j, 1201, 2)
	j.Close()
	after, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if len(after) >= len(before) || len(before) < 3 {
		t.Fatalf("segments: %d before the snapshot, %d after", len(before), len(after))
	}

	var warnings []string
	opts.Logf = func(f string, args ...any) { warnings = append(warnings, fmt.Sprintf(f, args...)) }
	j = openT(t, dir, opts)
	defer j.Close()
	if len(warnings) != 0 {
		t.Fatalf("warnings on a clean log: %q", warnings)
	}
	var state string
	c := &collector{}
	err := j.Load(func(r io.Reader) error {
		b, err := io.ReadAll(r)
		state = string(b)
		return err
	}, c.replay)
	if err != nil {
		t.Fatal(err)
	}
	if state != "state@1200" {
		t.Fatalf("restored %q", state)
	}
	wantRecords(t, c.got, 1201, 1206)
}

// A damaged snapshot refuses the start, naming the file.
func TestDamagedSnapshotRefusesStart(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	_ = j.Load(noSnapshot, (&collector{}).replay)
	appendBatches(t, j, 1, 2)
	_ = j.Snapshot(func(w io.Writer) error { _, err := io.WriteString(w, "some state"); return err }, true)
	j.Close()
	path := filepath.Join(dir, snapName(6))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[3] ^= 1
	_ = os.WriteFile(path, b, 0o640)
	j = openT(t, dir, Options{})
	defer j.Close()
	err = j.Load(func(io.Reader) error { return nil }, (&collector{}).replay)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("load of a damaged snapshot: %v", err)
	}
}

// Per-batch mode fsyncs the segment exactly once per append; none never
// does. FsyncTime adds up the time of the fsyncs counted.
func TestFsyncModes(t *testing.T) {
	for _, tc := range []struct {
		mode   FsyncMode
		fsyncs uint64
	}{
		{FsyncPerBatch, 20},
		{FsyncNone, 0},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			j := openT(t, t.TempDir(), Options{Fsync: tc.mode})
			_ = j.Load(noSnapshot, (&collector{}).replay)
			start, startTime := j.Fsyncs(), j.FsyncTime()
			appendBatches(t, j, 1, 20)
			n, took := j.Fsyncs()-start, j.FsyncTime()-startTime
			j.Close()
			if n != tc.fsyncs {
				t.Fatalf("%d fsyncs for 20 appends in mode %s, want %d", n, tc.mode, tc.fsyncs)
			}
			if (n > 0) != (took > 0) {
				t.Fatalf("%d fsyncs took %v", n, took)
			}
		})
	}
}

// A backup is the snapshot alone: put in an empty directory, it starts,
// and appends continue after it.
func TestRestoreFromSnapshotAlone(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	_ = j.Load(noSnapshot, (&collector{}).replay)
	appendBatches(t, j, 1, 3)
	if err := j.Snapshot(func(w io.Writer) error { _, err := io.WriteString(w, "state@9"); return err }, true); err != nil {
		t.Fatal(err)
	}
	j.Close()

	restored := t.TempDir()
	b, err := os.ReadFile(filepath.Join(dir, snapName(9)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, snapName(9)), b, 0o640); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		j = openT(t, restored, Options{})
		var state string
		c := &collector{}
		err := j.Load(func(r io.Reader) error { b, err := io.ReadAll(r); state = string(b); return err }, c.replay)
		if err != nil || state != "state@9" {
			t.Fatalf("round %d: restored %q, %v", round, state, err)
		}
		if round == 0 {
			wantRecords(t, c.got, 1, 0)
			appendBatches(t, j, 10, 1)
		} else {
			wantRecords(t, c.got, 10, 12)
		}
		j.Close()
	}
}

// Interval mode syncs in the background, not on the append path.
func TestFsyncIntervalSyncsInBackground(t *testing.T) {
	j := openT(t, t.TempDir(), Options{Fsync: FsyncInterval, FsyncInterval: 10 * time.Millisecond})
	defer j.Close()
	_ = j.Load(noSnapshot, (&collector{}).replay)
	start := j.Fsyncs()
	appendBatches(t, j, 1, 1)
	deadline := time.Now().Add(10 * time.Second)
	for j.Fsyncs() == start {
		if time.Now().After(deadline) {
			t.Fatal("no background fsync within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
