package abi

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// ErrMalformed is wrapped by every decoding error: the bytes do not follow
// the layout of ABI.md.
var ErrMalformed = errors.New("abi: malformed")

// reader walks a byte slice with a sticky error: after the first short read
// every read returns zero, so decoders check err once per item rather than
// after every field. It never panics on any input.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: at byte %d: %s", ErrMalformed, r.off, fmt.Sprintf(format, args...))
	}
}

func (r *reader) left() int { return len(r.b) - r.off }

// take returns the next n bytes (aliasing the input). Kept small enough to
// inline: it is the decoders' innermost call.
func (r *reader) take(n int) []byte {
	if r.err != nil || uint(n) > uint(len(r.b)-r.off) {
		r.short(n)
		return nil
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s
}

func (r *reader) short(n int) { r.fail("need %d bytes, have %d", n, r.left()) }

func (r *reader) u8() byte {
	if s := r.take(1); s != nil {
		return s[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if s := r.take(4); s != nil {
		return le.Uint32(s)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if s := r.take(8); s != nil {
		return le.Uint64(s)
	}
	return 0
}

// count reads a u32 element count and checks that count elements of at
// least min bytes each can still follow, so garbage cannot make a decoder
// allocate gigabytes.
func (r *reader) count(min int) int {
	n := r.u32()
	if r.err == nil && uint64(n)*uint64(min) > uint64(r.left()) {
		r.fail("count %d does not fit in %d bytes", n, r.left())
		return 0
	}
	return int(n)
}

// strBytes reads a length-prefixed string's bytes, aliasing the input.
func (r *reader) strBytes() []byte { return r.take(r.count(1)) }

// checkedStr reads a string that must be valid UTF-8 (protobuf refuses
// anything else, so a plugin's replacement must not smuggle it in).
func (r *reader) checkedStr() string {
	b := r.strBytes()
	if r.err == nil && !utf8.Valid(b) {
		r.fail("string is not valid UTF-8")
	}
	return string(b)
}

// dtypeSizes gives each tensor dtype's element size, to check that a
// replaced tensor's data matches its shape.
var dtypeSizes = map[string]int64{
	"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
	"int8": 1, "int16": 2, "int32": 4, "int64": 8,
	"uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8,
	"bool": 1,
}

// checkedValue reads a value a plugin produced: every slice is copied out of
// guest memory, strings must be UTF-8 and a tensor's data must match its
// shape and dtype.
func (r *reader) checkedValue() Value {
	var v Value
	v.Type = Type(r.u8())
	switch v.Type {
	case TypeNone:
	case TypeFloat:
		v.Float = math.Float64frombits(r.u64())
	case TypeInteger:
		v.Int = int64(r.u64())
	case TypeString, TypeChoice, TypeModule:
		v.Str = r.checkedStr()
	case TypeBoolean:
		switch r.u8() {
		case 0:
		case 1:
			v.Bool = true
		default:
			r.fail("boolean is not 0 or 1")
		}
	case TypeEmbedding:
		n := r.count(4)
		if r.err == nil {
			v.Embedding = make([]float32, n)
			for i := range v.Embedding {
				v.Embedding[i] = math.Float32frombits(r.u32())
			}
		}
	case TypeTensor:
		t := &Tensor{}
		n := r.count(8)
		if r.err == nil {
			t.Shape = make([]int64, n)
		}
		elems := int64(1)
		for i := range t.Shape {
			d := int64(r.u64())
			if d < 0 || (d > 0 && elems > math.MaxInt32/d) {
				r.fail("tensor dimension %d out of range", d)
				break
			}
			t.Shape[i] = d
			elems *= d
		}
		t.DType = r.checkedStr()
		t.Data = append([]byte(nil), r.strBytes()...)
		if size, ok := dtypeSizes[t.DType]; r.err == nil && !ok {
			r.fail("unknown tensor dtype %q", t.DType)
		} else if r.err == nil && int64(len(t.Data)) != elems*size {
			r.fail("tensor has %d bytes, shape and dtype need %d", len(t.Data), elems*size)
		}
		v.Tensor = t
	default:
		r.fail("unknown value type %d", v.Type)
	}
	return v
}

func (r *reader) checkedMetadata() Metadata {
	n := r.count(8)
	if r.err != nil {
		return nil
	}
	md := make(Metadata, n)
	for i := range md {
		md[i].Key = r.checkedStr()
		md[i].Value = r.checkedStr()
	}
	return md
}

// DecodeVerdicts decodes a plugin's output for a batch of n updates into
// out (reused when large enough) and checks it: exactly n verdicts, known
// actions and flags, replacement values of the update's type (typeOf(i)
// gives update i's type), no trailing bytes. Everything is copied out of b,
// so b may be guest memory that changes on the next call.
func DecodeVerdicts(b []byte, n int, typeOf func(i int) Type, out []Verdict) ([]Verdict, error) {
	r := reader{b: b}
	if got := r.u32(); r.err == nil && int(got) != n {
		r.fail("%d verdicts for %d updates", got, n)
	}
	if r.err != nil {
		return out[:0], r.err
	}
	if cap(out) < n {
		out = make([]Verdict, n)
	}
	out = out[:n]
	if len(b) == 4+n && passOrDrop(b[4:], out) {
		return out, nil
	}
	for i := range out {
		out[i] = Verdict{Action: Action(r.u8())}
		switch out[i].Action {
		case Pass, Drop:
		case Replace:
			flags := r.u8()
			if flags&^flagsKnown != 0 {
				r.fail("verdict %d: unknown replace flags %#x", i, flags)
				break
			}
			want := typeOf(i)
			if flags&flagNew != 0 {
				v := r.checkedValue()
				if r.err == nil && v.Type != want {
					r.fail("verdict %d: replacement is %s, update is %s", i, v.Type, want)
				}
				out[i].New = &v
			}
			if flags&flagMetadata != 0 {
				out[i].Metadata = r.checkedMetadata()
				if out[i].Metadata == nil && r.err == nil {
					out[i].Metadata = Metadata{}
				}
			}
			if flags&flagOld != 0 {
				v := r.checkedValue()
				if r.err == nil && v.Type != want && v.Type != TypeNone {
					r.fail("verdict %d: old replacement is %s, update is %s", i, v.Type, want)
				}
				out[i].Old = &v
			}
		default:
			r.fail("verdict %d: unknown action %d", i, out[i].Action)
		}
		if r.err != nil {
			return out[:0], r.err
		}
	}
	if r.left() != 0 {
		r.fail("%d trailing bytes", r.left())
		return out[:0], r.err
	}
	return out, nil
}

// AllPass reports whether b is the verdict list of n updates that all
// pass: the count followed by n zero bytes, what a pass-through answers.
// The host checks it a word at a time and then has nothing to decode.
func AllPass(b []byte, n int) bool {
	if len(b) != 4+n || le.Uint32(b) != uint32(n) {
		return false
	}
	b = b[4:]
	for len(b) >= 8 {
		if le.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// passOrDrop is DecodeVerdicts' fast path for the common output of only
// pass and drop verdicts, one byte each; it reports false, leaving the
// general decoder to it, on any other byte.
func passOrDrop(b []byte, out []Verdict) bool {
	out = out[:len(b)]
	for i, a := range b {
		if a > byte(Drop) {
			return false
		}
		out[i] = Verdict{Action: Action(a)}
	}
	return true
}

// DecodeParams decodes varwatch_init's input into a map.
func DecodeParams(b []byte) (map[string]string, error) {
	r := reader{b: b}
	md := r.checkedMetadata()
	if r.err == nil && r.left() != 0 {
		r.fail("%d trailing bytes", r.left())
	}
	if r.err != nil {
		return nil, r.err
	}
	return md.Map(), nil
}
