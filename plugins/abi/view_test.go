package abi

import (
	"errors"
	"testing"
)

func TestViewMatchesDecode(t *testing.T) {
	in := sampleBatch()
	buf := AppendBatch(nil, in)
	var d BatchDecoder
	for round := range 3 { // reuse of the decoder's memory must not corrupt
		vs, err := d.View(buf)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(vs) != len(in) {
			t.Fatalf("round %d: %d views, want %d", round, len(vs), len(in))
		}
		// Accessors in a different order than the record's, twice.
		for i := range vs {
			v := &vs[i]
			if v.Source() != in[i].Source || v.Name() != in[i].Name || v.ID() != in[i].ID {
				t.Errorf("update %d: strings %q %q %q", i, v.ID(), v.Name(), v.Source())
			}
			f, ok := v.NewFloat()
			if ok != (in[i].New.Type == TypeFloat) || (ok && f != in[i].New.Float) {
				t.Errorf("update %d: NewFloat %v %v", i, f, ok)
			}
			assertUpdateEqual(t, v.Update(), in[i])
			assertUpdateEqual(t, v.Update(), in[i])
		}
	}
}

func TestViewOfTruncatedRecord(t *testing.T) {
	u := sampleBatch()[0]
	buf := AppendBatch(nil, []Update{u})
	// Cut the record after the new value and fix its size: the header and
	// the new value still read, the rest reads as zero values.
	cut := 4 + NewValueOffset + 9
	buf = buf[:cut]
	le.PutUint32(buf[4:], uint32(cut-8))
	var d BatchDecoder
	vs, err := d.View(buf)
	if err != nil {
		t.Fatal(err)
	}
	v := &vs[0]
	if f, ok := v.NewFloat(); !ok || f != u.New.Float || v.Revision != u.Revision {
		t.Fatalf("header or new value lost: %v %v %d", f, ok, v.Revision)
	}
	if !v.Old().IsNone() || v.ID() != "" || v.Name() != "" || v.Source() != "" || v.Metadata() != nil {
		t.Fatalf("truncated fields: %+v", v.Update())
	}
	if _, err := d.View([]byte{1, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short record: %v", err)
	}
}

func TestViewAllocatesNothing(t *testing.T) {
	buf := AppendBatch(nil, sampleBatch()[:2])
	var d BatchDecoder
	if _, err := d.View(buf); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		vs, _ := d.View(buf)
		for i := range vs {
			_, _ = vs[i].NewFloat()
			_ = vs[i].ID()
			_ = vs[i].Metadata()
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch", allocs)
	}
}

// FuzzBatchView feeds arbitrary batches to the lazy view: no accessor
// panics on any input, and whenever BatchDecoder accepts a batch, the
// views read exactly what it decoded.
//
// Run it with: go test -run '^$' -fuzz '^FuzzBatchView$' -fuzztime 60s ./plugins/abi/
func FuzzBatchView(f *testing.F) {
	f.Add(AppendBatch(nil, sampleBatch()))
	f.Add(AppendBatch(nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d, e BatchDecoder
		vs, err := d.View(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		us, derr := e.Decode(b)
		for i := range vs {
			got := vs[i].Update()
			if derr == nil {
				assertUpdateEqual(t, got, us[i])
			}
		}
	})
}
