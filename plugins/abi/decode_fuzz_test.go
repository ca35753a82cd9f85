package abi

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"
)

// FuzzDecodeVerdicts feeds arbitrary guest output to DecodeVerdicts, the
// host's parser of what varwatch_filter returns. types gives update i's
// type (types[i%len], mod 10 so that unknown types occur too).
//
//   - It never panics, and a refusal wraps ErrMalformed.
//   - It allocates in proportion to the input: the verdict list is sized
//     by the host's count, and every slice in a verdict by bytes present.
//   - Everything is copied out of the input: scribbling over it afterwards
//     changes nothing decoded.
//   - Round trip: re-encoding what was decoded gives the input back, byte
//     for byte (except that an empty Replace re-encodes as Pass), and
//     decoding that gives the same verdicts.
//   - A reused out slice does not change the result.
//
// Run it with: go test -run '^$' -fuzz '^FuzzDecodeVerdicts$' -fuzztime 60s ./plugins/abi/
func FuzzDecodeVerdicts(f *testing.F) {
	str, nan, negZero := String("***"), Float(math.NaN()), Float(math.Copysign(0, -1))
	ten := TensorValue(Tensor{Shape: []int64{2, 1}, DType: "int16", Data: []byte{1, 0, 2, 0}})
	f.Add(AppendVerdicts(nil, []Verdict{{Action: Pass}, {Action: Drop}}), []byte{byte(TypeFloat)})
	f.Add(AppendVerdicts(nil, []Verdict{{Action: Replace, New: &str, Old: &str, Metadata: Metadata{{"k", "v"}}}}), []byte{byte(TypeString)})
	f.Add(AppendVerdicts(nil, []Verdict{{Action: Replace, New: &nan, Old: &negZero}}), []byte{byte(TypeFloat)})
	f.Add(AppendVerdicts(nil, []Verdict{{Action: Replace, New: &ten}}), []byte{byte(TypeTensor)})
	f.Add([]byte{1, 0, 0, 0, 2, 0}, []byte{byte(TypeInteger)})
	f.Add([]byte{1, 0, 0, 0, 2, 1, 7, 0xff, 0xff, 0xff, 0xff}, []byte{byte(TypeEmbedding)})
	f.Fuzz(func(t *testing.T, b, types []byte) {
		n := 1
		if len(b) >= 4 {
			// The host's count is the batch size; a count larger than the
			// output cannot be met (each verdict takes a byte), so cap it
			// like a real batch would be.
			n = min(int(le.Uint32(b)), len(b))
		}
		typeOf := func(i int) Type {
			if len(types) == 0 {
				return TypeFloat
			}
			return Type(types[i%len(types)] % 10)
		}

		in := slices.Clone(b)
		out, err := DecodeVerdicts(in, n, typeOf, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if len(out) != 0 {
				t.Fatalf("%d verdicts with error %v", len(out), err)
			}
			return
		}
		if len(out) != n {
			t.Fatalf("%d verdicts for n=%d", len(out), n)
		}
		if size := decodedSize(out); size > 2*len(b) {
			t.Fatalf("decoded %d payload bytes from %d input bytes", size, len(b))
		}

		enc := AppendVerdicts(nil, out)
		if hasEmptyReplace(out) {
			if len(enc) >= len(b) {
				t.Fatalf("re-encoding with empty replaces did not shrink: %d >= %d bytes", len(enc), len(b))
			}
		} else if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoded\n% x\nwant\n% x", enc, b)
		}

		for i := range in {
			in[i] ^= 0xa5
		}
		if again := AppendVerdicts(nil, out); !bytes.Equal(again, enc) {
			t.Fatalf("decoded verdicts alias the input: after changing it they encode as\n% x\nnot\n% x", again, enc)
		}

		reused := make([]Verdict, n+3)
		for i := range reused {
			v := String("stale")
			reused[i] = Verdict{Action: Replace, New: &v, Metadata: Metadata{{"stale", "x"}}}
		}
		out2, err := DecodeVerdicts(enc, n, typeOf, reused)
		if err != nil {
			t.Fatalf("decoding the re-encoding: %v", err)
		}
		if len(out2) != n {
			t.Fatalf("%d verdicts from the re-encoding, want %d", len(out2), n)
		}
		for i := range out {
			if !verdictEqual(normalize(out[i]), out2[i]) {
				t.Fatalf("verdict %d: %+v after a round trip, want %+v", i, out2[i], out[i])
			}
		}
	})
}

// FuzzDecodeParams checks DecodeParams (the guest's parser of its
// params) the same way: no panic, ErrMalformed, and a round trip through
// AppendParams for inputs without duplicate keys.
//
// Run it with: go test -run '^$' -fuzz '^FuzzDecodeParams$' -fuzztime 60s ./plugins/abi/
func FuzzDecodeParams(f *testing.F) {
	f.Add(AppendParams(nil, map[string]string{"threshold": "0.5", "mode": "abs"}))
	f.Add(AppendParams(nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeParams(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := DecodeParams(AppendParams(nil, m))
		if err != nil || len(again) != len(m) {
			t.Fatalf("round trip: %v, %d entries want %d", err, len(again), len(m))
		}
		for k, v := range m {
			if again[k] != v {
				t.Fatalf("round trip: %q = %q, want %q", k, again[k], v)
			}
		}
	})
}

// decodedSize is how many bytes the verdicts' slices and strings hold.
func decodedSize(vs []Verdict) int {
	n := 0
	val := func(v *Value) {
		if v == nil {
			return
		}
		n += len(v.Str) + 4*len(v.Embedding)
		if v.Tensor != nil {
			n += 8*len(v.Tensor.Shape) + len(v.Tensor.DType) + len(v.Tensor.Data)
		}
	}
	for i := range vs {
		val(vs[i].New)
		val(vs[i].Old)
		for _, kv := range vs[i].Metadata {
			n += len(kv.Key) + len(kv.Value)
		}
	}
	return n
}

func hasEmptyReplace(vs []Verdict) bool {
	for _, v := range vs {
		if v.Action == Replace && v.New == nil && v.Old == nil && v.Metadata == nil {
			return true
		}
	}
	return false
}

// normalize is what v decodes as after AppendVerdict: an empty Replace
// becomes a Pass.
func normalize(v Verdict) Verdict {
	if v.Action == Replace && v.New == nil && v.Old == nil && v.Metadata == nil {
		return Verdict{Action: Pass}
	}
	return v
}

func verdictEqual(a, b Verdict) bool {
	valEq := func(x, y *Value) bool {
		if x == nil || y == nil {
			return x == y
		}
		return x.Equal(*y)
	}
	return a.Action == b.Action && valEq(a.New, b.New) && valEq(a.Old, b.Old) &&
		(a.Metadata == nil) == (b.Metadata == nil) && slices.Equal(a.Metadata, b.Metadata)
}
