package journal

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
)

// raft-wal's segment layout, as far as reportTornTail needs it: a 32-byte
// file header, then frames of an 8-byte header (type, 3 reserved bytes,
// length or CRC) and a payload padded to 8 bytes. A batch ends with a
// commit frame.
const (
	segHeaderLen   = 32
	frameHeaderLen = 8
	frameEntry     = 1
	frameIndex     = 2
	frameCommit    = 3
)

// reportTornTail warns when the newest segment holds frames after its last
// commit frame: a batch a crash tore while it was being written. raft-wal
// cuts such a batch off silently when it opens the log (it was never
// acknowledged); this says so, with the file and offset.
func (j *Journal) reportTornTail() {
	segs, err := filepath.Glob(filepath.Join(j.dir, "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		return
	}
	slices.Sort(segs) // names start with the zero-padded base index
	path := segs[len(segs)-1]
	b, err := os.ReadFile(path)
	if err != nil || len(b) < segHeaderLen {
		return
	}
	// committed: the end of the last commit frame; prev: of the one before,
	// where the last batch (which its commit frame's CRC covers) starts.
	// The first batch's CRC covers the file header too.
	off, committed, prev := segHeaderLen, 0, 0
	var crc uint32
	for off+frameHeaderLen <= len(b) {
		typ, n := b[off], int(binary.LittleEndian.Uint32(b[off+4:]))
		if typ == 0 && n == 0 && b[off+1]|b[off+2]|b[off+3] == 0 {
			break // the zeros after the written part
		}
		if typ == frameCommit {
			prev, committed, crc = committed, off+frameHeaderLen, uint32(n)
			off += frameHeaderLen
			continue
		}
		if typ != frameEntry && typ != frameIndex {
			break // garbage: a torn header
		}
		off += frameHeaderLen + n + (frameHeaderLen-n%frameHeaderLen)%frameHeaderLen
	}
	// raft-wal checks the last batch against its commit CRC, as here.
	if committed > 0 && crc32.Checksum(b[prev:committed-frameHeaderLen], castagnoli) != crc {
		committed = prev
	}
	committed = max(committed, segHeaderLen)
	if end := min(off+frameHeaderLen, len(b)); slices.ContainsFunc(b[committed:end], func(c byte) bool { return c != 0 }) {
		j.opts.Logf("journal: WARNING: %s holds an unfinished batch after byte offset %d, torn by a crash while it was written; "+
			"it was never acknowledged and is cut off", path, committed)
	}
}
