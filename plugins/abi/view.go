package abi

import (
	"fmt"
	"math"
)

// UpdateView is one update of a batch, decoded lazily: the guest SDK's
// Update. The fixed header (Kind, Type, Revision, Time) is read when the
// batch is viewed; the values, strings and metadata only when a filter asks
// for them. Inside Wasm every decoded field costs: a pass-through or a
// filter that only looks at float values then pays for the header alone,
// not for five strings and two values per update.
//
// What the accessors return follows BatchDecoder's rules: strings (ids,
// names, sources, metadata, string values) are Go strings the filter may
// keep; slices (Metadata, embeddings, tensors) point into memory the next
// batch reuses, so a filter that keeps one past its call must copy it.
//
// # Notes
//
// View checks each record's framing and fixed part; a field past them
// that does not decode (which the host never sends) reads as its zero
// value. Not safe for concurrent use, like the decoder it belongs to.
type UpdateView struct {
	Kind Kind
	// Type is the variable's type, which New() has (Old() has it too, or
	// none).
	Type     Type
	Revision int64
	// Time is the wall-clock time of the change in Unix nanoseconds; use
	// it rather than the guest's clock.
	Time int64

	d   *BatchDecoder
	rec []byte // the record's body
	// off holds the body offsets of old, id, name, source and metadata
	// once walked; off[0] == 0 until then (the old value never starts at
	// 0).
	off [5]int32
	// md caches Metadata() for the rest of the batch; mdDone says it is
	// set (nil is a valid result).
	md     Metadata
	mdDone bool
}

// Body offsets' indexes in UpdateView.off.
const (
	offOld = iota
	offID
	offName
	offSource
	offMetadata
)

// View splits a batch into lazily decoded updates, reusing the decoder's
// memory: the views, and what their accessors return, are valid until the
// next View or Decode (strings excepted, see UpdateView). A batch whose
// framing is wrong is an ErrMalformed error.
func (d *BatchDecoder) View(b []byte) ([]UpdateView, error) {
	d.kvs, d.floats, d.shapes, d.tensors, d.bytes = d.kvs[:0], d.floats[:0], d.shapes[:0], d.tensors[:0], d.bytes[:0]
	if d.intern == nil {
		d.intern = new([internSlots]string)
	}
	if len(b) < 4 {
		return nil, malformedf("batch of %d bytes", len(b))
	}
	n := int(le.Uint32(b))
	if n > (len(b)-4)/(4+recordFixed) {
		return nil, malformedf("%d updates do not fit in %d bytes", n, len(b))
	}
	if cap(d.views) < n {
		d.views = make([]UpdateView, n)
	}
	vs := d.views[:n]
	p := 4
	for i := range vs {
		body, next, ok := span(b, p)
		if !ok || len(body) < recordFixed+2 { // the header and two value tags
			return nil, malformedf("update %d at byte %d", i, p)
		}
		vs[i] = UpdateView{
			Kind:     Kind(body[16]),
			Type:     Type(body[17]),
			Revision: int64(le.Uint64(body)),
			Time:     int64(le.Uint64(body[8:])),
			d:        d,
			rec:      body,
		}
		p = next
	}
	return vs, nil
}

// New returns the value after the change (the current value for an
// initial value).
func (u *UpdateView) New() Value {
	var v Value
	if _, ok := u.d.value(u.rec, recordFixed, &v); !ok {
		return Value{}
	}
	return v
}

// NewFloat returns the new value of a float update and true, or 0 and
// false for any other type: the cheapest way for a filter that only deals
// with floats to get at them.
func (u *UpdateView) NewFloat() (float64, bool) {
	b := u.rec
	if b[recordFixed] != byte(TypeFloat) || len(b) < recordFixed+9 {
		return 0, false
	}
	return math.Float64frombits(le.Uint64(b[recordFixed+1:])), true
}

// Old returns the value before the change; none for initial values and
// registrations.
func (u *UpdateView) Old() Value {
	var v Value
	if p := u.offset(offOld); p > 0 {
		if _, ok := u.d.value(u.rec, p, &v); ok {
			return v
		}
	}
	return Value{}
}

// ID returns the variable's id.
func (u *UpdateView) ID() string { return u.str(offID) }

// Name returns the variable's name.
func (u *UpdateView) Name() string { return u.str(offName) }

// Source returns who made the change (free text from the writer).
func (u *UpdateView) Source() string { return u.str(offSource) }

// Metadata returns the change's metadata, nil when it has none. The list
// is valid until the filter returns.
func (u *UpdateView) Metadata() Metadata {
	if u.mdDone {
		return u.md
	}
	u.mdDone = true
	p := u.offset(offMetadata)
	b := u.rec
	if p <= 0 || len(b)-p < 4 {
		return nil
	}
	n := int(le.Uint32(b[p:]))
	p += 4
	if n == 0 || n > (len(b)-p)/8 {
		return nil
	}
	start := len(u.d.kvs)
	for range n {
		k, next, ok := span(b, p)
		var v []byte
		if ok {
			v, next, ok = span(b, next)
		}
		if !ok {
			u.d.kvs = u.d.kvs[:start]
			return nil
		}
		u.d.kvs = append(u.d.kvs, KV{u.d.str(k), u.d.str(v)})
		p = next
	}
	u.md = Metadata(u.d.kvs[start:len(u.d.kvs):len(u.d.kvs)])
	return u.md
}

// Update decodes every field: the eager form of the view, what
// BatchDecoder.Decode would have returned for it.
func (u *UpdateView) Update() Update {
	return Update{Kind: u.Kind, Revision: u.Revision, Time: u.Time, ID: u.ID(), Name: u.Name(), Type: u.Type,
		New: u.New(), Old: u.Old(), Source: u.Source(), Metadata: u.Metadata()}
}

// str returns the string field at offset index i through the intern cache.
func (u *UpdateView) str(i int) string {
	p := u.offset(i)
	if p <= 0 {
		return ""
	}
	s, _, ok := span(u.rec, p)
	if !ok {
		return ""
	}
	return u.d.str(s)
}

// offset returns the body offset of field i, walking the record the first
// time; -1 when the record does not decode that far.
func (u *UpdateView) offset(i int) int {
	if u.off[0] == 0 {
		u.walk()
	}
	return int(u.off[i])
}

// walk finds where the variable-length fields start, without decoding
// them. A field that does not fit gets offset -1, and so do the ones after
// it.
func (u *UpdateView) walk() {
	b := u.rec
	p := skipValue(b, recordFixed)
	for i := range u.off {
		u.off[i] = int32(p)
		if p < 0 {
			continue
		}
		switch i {
		case offOld:
			p = skipValue(b, p)
		case offID, offName, offSource:
			if _, next, ok := span(b, p); ok {
				p = next
			} else {
				p = -1
			}
		}
	}
}

// skipValue returns the offset after the value at b[p:], or -1 when it
// does not fit (or p is already -1).
func skipValue(b []byte, p int) int {
	if p < 0 || p >= len(b) {
		return -1
	}
	t := Type(b[p])
	p++
	n := 0
	switch t {
	case TypeNone:
	case TypeFloat, TypeInteger:
		n = 8
	case TypeBoolean:
		n = 1
	case TypeString, TypeChoice, TypeModule:
		_, next, ok := span(b, p)
		if !ok {
			return -1
		}
		return next
	case TypeEmbedding:
		if len(b)-p < 4 {
			return -1
		}
		n = 4 + 4*int(le.Uint32(b[p:]))
	case TypeTensor:
		if len(b)-p < 4 {
			return -1
		}
		p += 4 + 8*int(le.Uint32(b[p:]))
		if p < 0 || p > len(b) {
			return -1
		}
		_, next, ok := span(b, p)
		if ok {
			_, next, ok = span(b, next)
		}
		if !ok {
			return -1
		}
		return next
	default:
		return -1
	}
	if n < 0 || n > len(b)-p {
		return -1
	}
	return p + n
}

func malformedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
