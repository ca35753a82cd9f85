package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// The journal's binary encoding: varints, length-prefixed strings and
// bytes, times as Unix nanoseconds. It is written by hand because Value
// keeps its fields private (it is immutable) and because the hot path, one
// record per acknowledged write, must cost little next to an fsync. Maps
// are written in key order, so one state always encodes to the same bytes.

// errCorrupt is the error of a record or snapshot that does not decode.
var errCorrupt = errors.New("engine: corrupt journal data")

type encoder struct{ buf []byte }

func (e *encoder) byte(b byte)      { e.buf = append(e.buf, b) }
func (e *encoder) uvarint(u uint64) { e.buf = binary.AppendUvarint(e.buf, u) }
func (e *encoder) varint(i int64)   { e.buf = binary.AppendVarint(e.buf, i) }
func (e *encoder) bool(b bool) {
	if b {
		e.byte(1)
	} else {
		e.byte(0)
	}
}
func (e *encoder) string(s string) { e.uvarint(uint64(len(s))); e.buf = append(e.buf, s...) }
func (e *encoder) bytes(b []byte)  { e.uvarint(uint64(len(b))); e.buf = append(e.buf, b...) }
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.byte(0)
		return
	}
	e.byte(1)
	e.varint(t.UnixNano())
}

func (e *encoder) metadata(m map[string]string) {
	if m == nil {
		e.byte(0)
		return
	}
	e.byte(1)
	e.uvarint(uint64(len(m)))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		e.string(k)
		e.string(m[k])
	}
}

func (e *encoder) strings(ss []string) {
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.string(s)
	}
}

func (e *encoder) int64s(xs []int64) {
	e.uvarint(uint64(len(xs)))
	for _, x := range xs {
		e.varint(x)
	}
}

func (e *encoder) value(v Value) {
	e.uvarint(uint64(v.typ))
	switch v.typ {
	case TypeFloat, TypeInteger, TypeBoolean:
		e.uvarint(v.num)
	case TypeString, TypeChoice, TypeModule:
		e.string(v.str)
	case TypeEmbedding:
		e.uvarint(uint64(len(v.embs())))
		for _, f := range v.embs() {
			e.buf = binary.LittleEndian.AppendUint32(e.buf, math.Float32bits(f))
		}
	case TypeTensor:
		e.int64s(v.ten.Shape)
		e.string(v.ten.DType)
		e.bytes(v.ten.Data)
	}
}

func (e *encoder) optFloat(f *float64) {
	e.bool(f != nil)
	if f != nil {
		e.uvarint(math.Float64bits(*f))
	}
}

func (e *encoder) optInt(i *int64) {
	e.bool(i != nil)
	if i != nil {
		e.varint(*i)
	}
}

func (e *encoder) constraints(c Constraints) {
	e.optFloat(c.Min)
	e.optFloat(c.Max)
	e.optInt(c.MinInteger)
	e.optInt(c.MaxInteger)
	e.optInt(c.MinLength)
	e.optInt(c.MaxLength)
	e.string(c.Pattern)
	e.strings(c.Choices)
	e.strings(c.AllowedModules)
	e.varint(int64(c.Dimensions))
	e.bool(c.Shape != nil)
	e.int64s(c.Shape)
}

func (e *encoder) variable(v *Variable) {
	e.string(v.ID)
	e.string(v.Name)
	e.uvarint(uint64(v.Type))
	e.value(v.Value)
	e.constraints(*v.Constraints)
	e.metadata(v.Metadata)
	e.varint(v.Version)
	e.varint(v.CreateRevision)
	e.varint(v.ModRevision)
	e.time(v.CreatedAt)
	e.time(v.UpdatedAt)
	e.string(v.Source)
}

// decoder reads what encoder wrote. The first malformed field sets err;
// every later read then returns zero values, so callers check err once.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if len(d.buf) == 0 {
		d.fail("byte")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	u, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.buf = d.buf[n:]
	return u
}

func (d *decoder) varint() int64 {
	i, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.buf = d.buf[n:]
	return i
}

func (d *decoder) bool() bool { return d.byte() == 1 }

// length reads a count of items of at least min bytes each and checks that
// the rest of the buffer can hold them, so corrupt input cannot make a
// decoder allocate gigabytes.
func (d *decoder) length(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.buf)/max(min, 1)) {
		d.fail("length")
		return 0
	}
	return int(n)
}

func (d *decoder) bytesRef() []byte {
	n := d.length(1)
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) string() string { return string(d.bytesRef()) }
func (d *decoder) bytes() []byte  { return slices.Clone(d.bytesRef()) }

func (d *decoder) time() time.Time {
	if d.byte() == 0 {
		return time.Time{}
	}
	return time.Unix(0, d.varint())
}

func (d *decoder) metadata() map[string]string {
	if d.byte() == 0 {
		return nil
	}
	n := d.length(2)
	m := make(map[string]string, n)
	for range n {
		k := d.string()
		m[k] = d.string()
	}
	return m
}

func (d *decoder) strings() []string {
	n := d.length(1)
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.string()
	}
	return ss
}

func (d *decoder) int64s() []int64 {
	n := d.length(1)
	if n == 0 {
		return nil
	}
	xs := make([]int64, n)
	for i := range xs {
		xs[i] = d.varint()
	}
	return xs
}

func (d *decoder) value() Value {
	v := Value{typ: Type(d.uvarint())}
	switch v.typ {
	case 0:
	case TypeFloat, TypeInteger, TypeBoolean:
		v.num = d.uvarint()
	case TypeString, TypeChoice, TypeModule:
		v.str = d.string()
	case TypeEmbedding:
		n := d.length(4)
		emb := make([]float32, n)
		for i := range emb {
			emb[i] = math.Float32frombits(binary.LittleEndian.Uint32(d.buf[4*i:]))
		}
		v = embeddingOf(emb)
		d.buf = d.buf[4*n:]
	case TypeTensor:
		v.ten = &Tensor{Shape: d.int64s(), DType: d.string(), Data: d.bytes()}
	default:
		d.fail("value type")
	}
	return v
}

func (d *decoder) optFloat() *float64 {
	if !d.bool() {
		return nil
	}
	f := math.Float64frombits(d.uvarint())
	return &f
}

func (d *decoder) optInt() *int64 {
	if !d.bool() {
		return nil
	}
	i := d.varint()
	return &i
}

func (d *decoder) constraints() Constraints {
	c := Constraints{
		Min: d.optFloat(), Max: d.optFloat(),
		MinInteger: d.optInt(), MaxInteger: d.optInt(),
		MinLength: d.optInt(), MaxLength: d.optInt(),
		Pattern:        d.string(),
		Choices:        d.strings(),
		AllowedModules: d.strings(),
		Dimensions:     int(d.varint()),
	}
	hasShape := d.bool()
	c.Shape = d.int64s()
	if hasShape && c.Shape == nil {
		c.Shape = []int64{}
	}
	return c
}

// constraintsRef decodes constraints into a value of their own.
func (d *decoder) constraintsRef() *Constraints {
	c := d.constraints()
	return &c
}

// variable decodes a variable, with the metadata stats the byte bounds
// read (bytes.go), which are not encoded.
func (d *decoder) variable() *Variable {
	v := &Variable{
		ID:             d.string(),
		Name:           d.string(),
		Type:           Type(d.uvarint()),
		Value:          d.value(),
		Constraints:    d.constraintsRef(),
		Metadata:       d.metadata(),
		Version:        d.varint(),
		CreateRevision: d.varint(),
		ModRevision:    d.varint(),
		CreatedAt:      d.time(),
		UpdatedAt:      d.time(),
		Source:         d.string(),
	}
	v.meta = statsOf(v.Metadata)
	return v
}
