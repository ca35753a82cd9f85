package journal

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// Whatever the mix of reads and writes, a readAhead reads what the file
// holds, with ReadAt's EOF rule.
func TestReadAheadMatchesFile(t *testing.T) {
	data := make([]byte, 3*windowSize+123)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	file := &memFile{b: bytes.Clone(data)}
	ra := &readAhead{f: file}
	for range 20000 {
		off := int64(r.IntN(len(data) + 10))
		n := 1 + r.IntN(200)
		if r.IntN(10) == 0 { // a write, as syncFile does it
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(r.Uint32())
			}
			if off+int64(n) > int64(len(file.b)) {
				continue
			}
			ra.invalidate(off, n)
			copy(file.b[off:], p)
			ra.invalidate(off, n)
			continue
		}
		got := make([]byte, n)
		want := make([]byte, n)
		gn, gerr := ra.ReadAt(got, off)
		wn, werr := file.ReadAt(want, off)
		if gn != wn || gerr != werr || !bytes.Equal(got[:gn], want[:wn]) {
			t.Fatalf("ReadAt(%d bytes at %d): got %d %v, file %d %v", n, off, gn, gerr, wn, werr)
		}
	}
}

type memFile struct{ b []byte }

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
