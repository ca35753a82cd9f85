package engine

import (
	"fmt"
	"math"
	"slices"
)

// Type is a variable's type. The zero value is not a valid type.
type Type int

// The eight variable types.
const (
	TypeFloat Type = iota + 1
	TypeInteger
	TypeString
	TypeBoolean
	TypeChoice
	TypeModule
	TypeEmbedding
	TypeTensor
)

var typeNames = [...]string{
	TypeFloat:     "float",
	TypeInteger:   "integer",
	TypeString:    "string",
	TypeBoolean:   "boolean",
	TypeChoice:    "choice",
	TypeModule:    "module",
	TypeEmbedding: "embedding",
	TypeTensor:    "tensor",
}

// String returns the lower-case type name ("float", "tensor", ...).
func (t Type) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// Valid reports whether t is one of the eight types.
func (t Type) Valid() bool { return t >= TypeFloat && t <= TypeTensor }

// ParseType is the inverse of Type.String.
func ParseType(s string) (Type, error) {
	for t := TypeFloat; t <= TypeTensor; t++ {
		if typeNames[t] == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown type %q (want float, integer, string, boolean, choice, module, embedding or tensor)", ErrInvalidArgument, s)
}

// Tensor is a dense little-endian, row-major array of DType elements.
type Tensor struct {
	Shape []int64
	DType string
	Data  []byte
}

// dtypeSizes gives the element size in bytes of each accepted dtype.
var dtypeSizes = map[string]int64{
	"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
	"int8": 1, "int16": 2, "int32": 4, "int64": 8,
	"uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8,
	"bool": 1,
}

// Value is one typed value. Values are immutable: constructors copy slices
// in, accessors copy them out, so a Value can be shared between the engine
// loop and any number of readers without locks.
type Value struct {
	typ Type
	num uint64 // float bits, int64 or bool as 0/1
	str string // string, choice, module
	// emb is an embedding's elements, behind a pointer: a slice would make
	// every Value 16 bytes larger, and every Variable and Event holds one
	// (a Variable is then 208 bytes, not 224, and each write makes one).
	emb *[]float32
	ten *Tensor
}

// assign makes the zero *v a copy of *w, writing only the fields w sets,
// each on its own: a Value is too large to move in registers, and moving
// it whole costs, while the collector marks, a barrier for each of its
// pointers, nil or not.
func (v *Value) assign(w *Value) {
	v.typ, v.num = w.typ, w.num
	if w.str != "" {
		v.str = w.str
	}
	if w.emb != nil {
		v.emb = w.emb
	}
	if w.ten != nil {
		v.ten = w.ten
	}
}

// clear makes v zero, writing only the pointers it holds (see assign).
func (v *Value) clear() {
	v.typ, v.num = 0, 0
	if v.str != "" {
		v.str = ""
	}
	if v.emb != nil {
		v.emb = nil
	}
	if v.ten != nil {
		v.ten = nil
	}
}

// embs returns an embedding's elements (nil for any other value), for
// reading only.
func (v Value) embs() []float32 {
	if v.emb == nil {
		return nil
	}
	return *v.emb
}

// embeddingOf returns the embedding value of e, which it keeps: the
// caller must not change e afterwards.
func embeddingOf(e []float32) Value { return Value{typ: TypeEmbedding, emb: &e} }

// Float returns a float value.
func Float(f float64) Value { return Value{typ: TypeFloat, num: math.Float64bits(f)} }

// Integer returns an integer value.
func Integer(i int64) Value { return Value{typ: TypeInteger, num: uint64(i)} }

// String returns a string value.
func String(s string) Value { return Value{typ: TypeString, str: s} }

// Boolean returns a boolean value.
func Boolean(b bool) Value {
	v := Value{typ: TypeBoolean}
	if b {
		v.num = 1
	}
	return v
}

// Choice returns a choice value: one of the variable's allowed choices.
func Choice(s string) Value { return Value{typ: TypeChoice, str: s} }

// Module returns a module value: a module name.
func Module(s string) Value { return Value{typ: TypeModule, str: s} }

// Embedding returns an embedding value; it copies e.
func Embedding(e []float32) Value {
	return embeddingOf(slices.Clone(e))
}

// TensorOf returns a tensor value; it copies t's slices.
func TensorOf(t Tensor) Value {
	return Value{typ: TypeTensor, ten: &Tensor{
		Shape: slices.Clone(t.Shape),
		DType: t.DType,
		Data:  slices.Clone(t.Data),
	}}
}

// Type returns the value's type; zero for the zero Value ("no value").
func (v Value) Type() Type { return v.typ }

// IsZero reports whether v is the zero Value, which stands for "no value".
func (v Value) IsZero() bool { return v.typ == 0 }

// Float returns the float; zero unless Type is TypeFloat.
func (v Value) Float() float64 {
	if v.typ != TypeFloat {
		return 0
	}
	return math.Float64frombits(v.num)
}

// Integer returns the integer; zero unless Type is TypeInteger.
func (v Value) Integer() int64 {
	if v.typ != TypeInteger {
		return 0
	}
	return int64(v.num)
}

// Boolean returns the boolean; false unless Type is TypeBoolean.
func (v Value) Boolean() bool { return v.typ == TypeBoolean && v.num == 1 }

// Str returns the text of a string, choice or module value.
func (v Value) Str() string { return v.str }

// Embedding returns a copy of the embedding's elements.
func (v Value) Embedding() []float32 { return slices.Clone(v.embs()) }

// EmbeddingLen returns the number of embedding elements without copying.
func (v Value) EmbeddingLen() int { return len(v.embs()) }

// EmbeddingAt returns element i of the embedding, without copying.
func (v Value) EmbeddingAt(i int) float32 { return v.embs()[i] }

// TensorView returns the tensor without copying, for encoders on the hot
// path. The slices are shared by every reader of the value: they must not
// be modified. Tensor returns a copy.
func (v Value) TensorView() Tensor {
	if v.ten == nil {
		return Tensor{}
	}
	return *v.ten
}

// Tensor returns a copy of the tensor.
func (v Value) Tensor() Tensor {
	if v.ten == nil {
		return Tensor{}
	}
	return Tensor{Shape: slices.Clone(v.ten.Shape), DType: v.ten.DType, Data: slices.Clone(v.ten.Data)}
}

// Equal reports whether a and b have the same type and contents. Floats,
// embedding elements included, compare by bits, so NaN equals the same NaN.
func (a Value) Equal(b Value) bool {
	if a.typ != b.typ || a.num != b.num || a.str != b.str || !slices.EqualFunc(a.embs(), b.embs(), sameBits) {
		return false
	}
	if (a.ten == nil) != (b.ten == nil) {
		return false
	}
	return a.ten == nil || (a.ten.DType == b.ten.DType &&
		slices.Equal(a.ten.Shape, b.ten.Shape) && string(a.ten.Data) == string(b.ten.Data))
}

func sameBits(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }

// String formats the value for people: 21.5, 7, "text", true, [0.1 0.2],
// tensor float32[2 3].
func (v Value) String() string {
	switch v.typ {
	case TypeFloat:
		return fmt.Sprint(v.Float())
	case TypeInteger:
		return fmt.Sprint(v.Integer())
	case TypeBoolean:
		return fmt.Sprint(v.Boolean())
	case TypeString, TypeChoice, TypeModule:
		return fmt.Sprintf("%q", v.str)
	case TypeEmbedding:
		return fmt.Sprint(v.embs())
	case TypeTensor:
		return fmt.Sprintf("tensor %s%v (%d bytes)", v.ten.DType, v.ten.Shape, len(v.ten.Data))
	}
	return "<none>"
}

// brief is String cut to a size an error message can carry: a refused
// value may be a megabyte, and the message goes back over the wire.
func (v Value) brief() string {
	switch v.typ {
	case TypeString, TypeChoice, TypeModule:
		return truncQuote(v.str)
	case TypeEmbedding:
		if e := v.embs(); len(e) > 8 {
			return fmt.Sprintf("%v... (%d elements)", e[:8], len(e))
		}
	}
	return v.String()
}

// size estimates the value's memory in bytes, for limits and history bounds.
func (v Value) size() int {
	n := 32 + len(v.str) + 4*len(v.embs())
	if v.ten != nil {
		n += 8*len(v.ten.Shape) + len(v.ten.Data)
	}
	return n
}
