package abi

import (
	"fmt"
	"math"
)

// internSlots is the size of a BatchDecoder's string cache: direct-mapped
// and fixed, so the cache is bounded however many distinct names a stream
// carries, and a hit costs a few loads and one compare instead of a map
// lookup.
const (
	internBits  = 12
	internSlots = 1 << internBits
)

// BatchDecoder decodes batches on the guest side, reusing its memory from
// one batch to the next so that a steady stream of updates allocates almost
// nothing inside the plugin.
//
// Strings (ids, names, sources, metadata, string values) are Go strings the
// filter may keep: ids, names, sources and metadata are interned, so the
// same id decodes to the same string without allocating. Slices (the update
// list, Metadata, embeddings, tensors) point into memory the next Decode
// reuses: a filter that keeps one past its call must copy it.
//
// The code indexes the record directly instead of going through a reader:
// inside Wasm every Go call is expensive, and this is the guest's
// per-update cost.
//
// # Notes
//
// Not safe for concurrent use; a plugin instance is single-threaded anyway.
type BatchDecoder struct {
	intern  *[internSlots]string
	updates []Update
	views   []UpdateView
	kvs     []KV
	floats  []float32
	shapes  []int64
	tensors []Tensor
	bytes   []byte
}

// Decode decodes one batch. It trusts the sender to be the varwatch host
// (no UTF-8 checks) but still never reads out of bounds: a bad batch is an
// ErrMalformed error.
func (d *BatchDecoder) Decode(b []byte) ([]Update, error) {
	d.kvs, d.floats, d.shapes, d.tensors, d.bytes = d.kvs[:0], d.floats[:0], d.shapes[:0], d.tensors[:0], d.bytes[:0]
	if d.intern == nil {
		d.intern = new([internSlots]string)
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: batch of %d bytes", ErrMalformed, len(b))
	}
	n := int(le.Uint32(b))
	if n > (len(b)-4)/(4+recordFixed) {
		return nil, fmt.Errorf("%w: %d updates do not fit in %d bytes", ErrMalformed, n, len(b))
	}
	if cap(d.updates) < n {
		d.updates = make([]Update, n)
	}
	us := d.updates[:n]
	p := 4
	for i := range us {
		body, next, ok := span(b, p)
		if !ok || !d.record(body, &us[i]) {
			return nil, fmt.Errorf("%w: update %d at byte %d", ErrMalformed, i, p)
		}
		p = next
	}
	return us, nil
}

// span returns the length-prefixed bytes at b[p:] and the offset after
// them.
func span(b []byte, p int) (s []byte, next int, ok bool) {
	if p < 0 || len(b)-p < 4 {
		return nil, p, false
	}
	n := int(le.Uint32(b[p:]))
	p += 4
	if n > len(b)-p {
		return nil, p, false
	}
	return b[p : p+n : p+n], p + n, true
}

// record decodes one record's body. Bytes after the fields it knows are
// ignored: a later minor ABI revision may append fields.
func (d *BatchDecoder) record(b []byte, u *Update) bool {
	if len(b) < recordFixed {
		return false
	}
	u.Revision = int64(le.Uint64(b))
	u.Time = int64(le.Uint64(b[8:]))
	u.Kind = Kind(b[16])
	u.Type = Type(b[17])
	p, ok := d.value(b, recordFixed, &u.New)
	if ok {
		p, ok = d.value(b, p, &u.Old)
	}
	var s []byte
	if ok {
		s, p, ok = span(b, p)
		u.ID = d.str(s)
	}
	if ok {
		s, p, ok = span(b, p)
		u.Name = d.str(s)
	}
	if ok {
		s, p, ok = span(b, p)
		u.Source = d.str(s)
	}
	if !ok || len(b)-p < 4 {
		return false
	}
	n := int(le.Uint32(b[p:]))
	p += 4
	if n > (len(b)-p)/8 {
		return false
	}
	u.Metadata = nil
	if n == 0 {
		return true
	}
	start := len(d.kvs)
	for range n {
		var k, v []byte
		if k, p, ok = span(b, p); ok {
			v, p, ok = span(b, p)
		}
		if !ok {
			return false
		}
		d.kvs = append(d.kvs, KV{d.str(k), d.str(v)})
	}
	u.Metadata = Metadata(d.kvs[start:len(d.kvs):len(d.kvs)])
	return true
}

// str returns b as a string through the intern cache. The slot is chosen
// from the length and the first and last bytes (ids and names usually
// differ at the end), which is cheap to compute; a collision only costs an
// allocation.
func (d *BatchDecoder) str(b []byte) string {
	n := len(b)
	if n == 0 {
		return ""
	}
	h := uint32(n) ^ uint32(b[0])<<8
	if n >= 4 {
		h += le.Uint32(b[n-4:])
	} else {
		h += uint32(b[n-1]) << 16
	}
	// Multiplicative hashing: the top bits of the product depend on all
	// of h's bits.
	slot := &d.intern[(h*0x9e3779b1)>>(32-internBits)]
	if *slot != string(b) {
		*slot = string(b)
	}
	return *slot
}

// value decodes the value at b[p:] into v and returns the offset after it.
func (d *BatchDecoder) value(b []byte, p int, v *Value) (int, bool) {
	if p >= len(b) {
		return p, false
	}
	t := Type(b[p])
	p++
	*v = Value{Type: t}
	switch t {
	case TypeNone:
	case TypeFloat, TypeInteger:
		if len(b)-p < 8 {
			return p, false
		}
		x := le.Uint64(b[p:])
		v.Float, v.Int = math.Float64frombits(x), int64(x)
		if t == TypeFloat {
			v.Int = 0
		} else {
			v.Float = 0
		}
		p += 8
	case TypeString, TypeChoice, TypeModule:
		s, next, ok := span(b, p)
		if !ok {
			return p, false
		}
		v.Str, p = string(s), next
	case TypeBoolean:
		if p >= len(b) {
			return p, false
		}
		v.Bool = b[p] != 0
		p++
	case TypeEmbedding:
		if len(b)-p < 4 {
			return p, false
		}
		n := int(le.Uint32(b[p:]))
		p += 4
		if n > (len(b)-p)/4 {
			return p, false
		}
		start := len(d.floats)
		for i := range n {
			d.floats = append(d.floats, math.Float32frombits(le.Uint32(b[p+4*i:])))
		}
		p += 4 * n
		v.Embedding = d.floats[start:len(d.floats):len(d.floats)]
	case TypeTensor:
		if len(b)-p < 4 {
			return p, false
		}
		n := int(le.Uint32(b[p:]))
		p += 4
		if n > (len(b)-p)/8 {
			return p, false
		}
		start := len(d.shapes)
		for i := range n {
			d.shapes = append(d.shapes, int64(le.Uint64(b[p+8*i:])))
		}
		p += 8 * n
		dtype, p2, ok := span(b, p)
		var data []byte
		if ok {
			data, p, ok = span(b, p2)
		}
		if !ok {
			return p, false
		}
		bstart := len(d.bytes)
		d.bytes = append(d.bytes, data...)
		d.tensors = append(d.tensors, Tensor{
			Shape: d.shapes[start:len(d.shapes):len(d.shapes)],
			DType: d.str(dtype),
			Data:  d.bytes[bstart:len(d.bytes):len(d.bytes)],
		})
		v.Tensor = &d.tensors[len(d.tensors)-1]
	default:
		return p, false
	}
	return p, true
}
