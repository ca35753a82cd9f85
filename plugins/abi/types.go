// Package abi is the wire format of varwatch filter plugins (ABI version 1,
// see plugins/ABI.md): the typed updates and verdicts that cross the Wasm
// boundary, and the flat little-endian codec for them.
//
// Both sides use this one package: the host (package plugins) encodes batches
// and decodes verdicts, the guest SDK (package plugins/sdk, compiled to
// wasip1) decodes batches and encodes verdicts. Keeping the codec in one
// place means the two ends cannot drift apart, and the host's tests exercise
// the guest's decoder natively.
//
// The package has no dependency on the engine: the gRPC integration converts
// engine events to Update and back.
package abi

import (
	"fmt"
	"math"
)

// Version is the ABI version this package speaks. A plugin exports
// varwatch_abi_version returning it; the host refuses any other number.
const Version = 1

// Type is a value's type, numbered as on the wire (and as engine.Type).
// Zero means "no value".
type Type uint8

// The eight varwatch value types.
const (
	TypeNone Type = iota
	TypeFloat
	TypeInteger
	TypeString
	TypeBoolean
	TypeChoice
	TypeModule
	TypeEmbedding
	TypeTensor
)

var typeNames = [...]string{"none", "float", "integer", "string", "boolean", "choice", "module", "embedding", "tensor"}

// String returns the lower-case type name ("float", "tensor", ...).
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Kind says what an update reports. Only these four event kinds reach
// filters; heartbeats and stream control never do.
type Kind uint8

// Update kinds.
const (
	// KindInitialValue is a variable's value when a watch starts. It goes to
	// one new stream only, so stateful filters should pass it and leave
	// their state alone (the examples do).
	KindInitialValue Kind = 1
	KindValueChange  Kind = 2
	KindRegistered   Kind = 3
	KindDeleted      Kind = 4
)

var kindNames = [...]string{"", "initial_value", "value_change", "variable_registered", "variable_deleted"}

// String returns the wire name of the kind ("value_change", ...).
func (k Kind) String() string {
	if k >= KindInitialValue && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Tensor is a dense little-endian, row-major array of DType elements.
type Tensor struct {
	Shape []int64
	DType string
	Data  []byte
}

// Value is one typed value. Only the field that matches Type is meaningful:
// Float for float, Int for integer, Str for string, choice and module, Bool
// for boolean, Embedding and Tensor for theirs.
//
// Values handed to a filter are read-only: the host shares them between the
// stages of a chain, the guest SDK may point their slices into its input
// buffer (see sdk.Update).
type Value struct {
	Type      Type
	Float     float64
	Int       int64
	Str       string
	Bool      bool
	Embedding []float32
	Tensor    *Tensor
}

// Float returns a float value.
func Float(f float64) Value { return Value{Type: TypeFloat, Float: f} }

// Integer returns an integer value.
func Integer(i int64) Value { return Value{Type: TypeInteger, Int: i} }

// String returns a string value.
func String(s string) Value { return Value{Type: TypeString, Str: s} }

// Boolean returns a boolean value.
func Boolean(b bool) Value { return Value{Type: TypeBoolean, Bool: b} }

// Choice returns a choice value.
func Choice(s string) Value { return Value{Type: TypeChoice, Str: s} }

// Module returns a module value.
func Module(s string) Value { return Value{Type: TypeModule, Str: s} }

// Embedding returns an embedding value; it keeps e (no copy).
func Embedding(e []float32) Value { return Value{Type: TypeEmbedding, Embedding: e} }

// TensorValue returns a tensor value; it keeps t (no copy).
func TensorValue(t Tensor) Value { return Value{Type: TypeTensor, Tensor: &t} }

// IsNone reports whether v stands for "no value" (an initial value's old
// value, for example).
func (v Value) IsNone() bool { return v.Type == TypeNone }

// Equal reports whether a and b have the same type and contents; floats
// compare by bits so that a NaN equals itself.
func (a Value) Equal(b Value) bool {
	if a.Type != b.Type {
		return false
	}
	switch a.Type {
	case TypeFloat:
		return math.Float64bits(a.Float) == math.Float64bits(b.Float)
	case TypeInteger:
		return a.Int == b.Int
	case TypeString, TypeChoice, TypeModule:
		return a.Str == b.Str
	case TypeBoolean:
		return a.Bool == b.Bool
	case TypeEmbedding:
		if len(a.Embedding) != len(b.Embedding) {
			return false
		}
		for i := range a.Embedding {
			if math.Float32bits(a.Embedding[i]) != math.Float32bits(b.Embedding[i]) {
				return false
			}
		}
		return true
	case TypeTensor:
		if a.Tensor == nil || b.Tensor == nil {
			return a.Tensor == b.Tensor
		}
		if a.Tensor.DType != b.Tensor.DType || len(a.Tensor.Shape) != len(b.Tensor.Shape) ||
			string(a.Tensor.Data) != string(b.Tensor.Data) {
			return false
		}
		for i := range a.Tensor.Shape {
			if a.Tensor.Shape[i] != b.Tensor.Shape[i] {
				return false
			}
		}
		return true
	}
	return true
}

// String formats the value for people and test failures.
func (v Value) String() string {
	switch v.Type {
	case TypeFloat:
		return fmt.Sprint(v.Float)
	case TypeInteger:
		return fmt.Sprint(v.Int)
	case TypeBoolean:
		return fmt.Sprint(v.Bool)
	case TypeString, TypeChoice, TypeModule:
		return fmt.Sprintf("%q", v.Str)
	case TypeEmbedding:
		return fmt.Sprint(v.Embedding)
	case TypeTensor:
		if v.Tensor == nil {
			return "tensor <nil>"
		}
		return fmt.Sprintf("tensor %s%v (%d bytes)", v.Tensor.DType, v.Tensor.Shape, len(v.Tensor.Data))
	}
	return "<none>"
}

// KV is one metadata entry.
type KV struct{ Key, Value string }

// Metadata is an update's metadata as an ordered list of entries. A list,
// not a map, because the guest decodes it on every update and a map per
// update would dominate the cost of a small filter; lookups are linear,
// which is faster than hashing for the handful of keys updates carry.
type Metadata []KV

// Get returns the value of key and whether it is present.
func (m Metadata) Get(key string) (string, bool) {
	for _, kv := range m {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// Map returns the entries as a new map (later entries win on duplicates).
func (m Metadata) Map() map[string]string {
	out := make(map[string]string, len(m))
	for _, kv := range m {
		out[kv.Key] = kv.Value
	}
	return out
}

// MetadataFromMap returns m's entries sorted by key, so equal maps encode to
// equal bytes. A nil or empty map gives nil.
func MetadataFromMap(m map[string]string) Metadata {
	if len(m) == 0 {
		return nil
	}
	out := make(Metadata, 0, len(m))
	for k, v := range m {
		out = append(out, KV{k, v})
	}
	sortKVs(out)
	return out
}

func sortKVs(kvs []KV) {
	// Insertion sort: metadata has a handful of entries and this keeps the
	// guest free of the sort package's generic code.
	for i := 1; i < len(kvs); i++ {
		for j := i; j > 0 && kvs[j].Key < kvs[j-1].Key; j-- {
			kvs[j], kvs[j-1] = kvs[j-1], kvs[j]
		}
	}
}

// Update is one change a filter sees.
type Update struct {
	Kind     Kind
	Revision int64
	// Time is the wall-clock time of the change in Unix nanoseconds. Filters
	// that reason about time (ratelimit) use it rather than their own clock,
	// so a batch replays the same way every time.
	Time int64
	ID   string
	Name string
	Type Type
	New  Value
	// Old is the value before the change; none for initial values and
	// registrations.
	Old      Value
	Source   string
	Metadata Metadata
}

// Action is a filter's decision about one update.
type Action uint8

// Actions, numbered as on the wire.
const (
	Pass    Action = 0
	Drop    Action = 1
	Replace Action = 2
)

var actionNames = [...]string{"pass", "drop", "replace"}

// String returns "pass", "drop" or "replace".
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Verdict is a filter's answer for one update. For Replace, each non-nil
// field replaces the corresponding part of the update; a Replace with all
// fields nil is the same as Pass.
type Verdict struct {
	Action Action
	// New replaces the new value; its type must be the update's type.
	New *Value
	// Old replaces the old value (redaction must hide both).
	Old *Value
	// Metadata, when non-nil, replaces the metadata as a whole; an empty
	// non-nil list clears it.
	Metadata Metadata
}

// WithNew returns v turned into a Replace that also replaces the new value.
func (v Verdict) WithNew(nv Value) Verdict {
	v.Action, v.New = Replace, &nv
	return v
}

// WithOld returns v turned into a Replace that also replaces the old value.
func (v Verdict) WithOld(ov Value) Verdict {
	v.Action, v.Old = Replace, &ov
	return v
}

// WithMetadata returns v turned into a Replace that also replaces the
// metadata as a whole (an empty md clears it).
func (v Verdict) WithMetadata(md Metadata) Verdict {
	if md == nil {
		md = Metadata{}
	}
	v.Action, v.Metadata = Replace, md
	return v
}
