package grpcapi

import (
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/varwatch/varwatch/engine"
)

// The watch streams encode their updates here, by hand, straight from the
// engine's events: the generic path (eventToProto, then proto.Marshal)
// built about ten heap objects per update and walked them by reflection
// twice (once to size, once to write), and was most of a stream's CPU.
// The output is a varwatch.v1.VariableUpdate that proto.Unmarshal reads
// back equal to eventToProto's (wire_test.go checks this over random
// events), with fields in field-number order as proto.Marshal writes them.
//
// Field numbers below are bridge.proto's; a change there must change them
// here, and the equivalence test fails until it does.

// view is how much of a variable an update carries (pb.View). Its value
// is also the engine.Memo slot that keeps the update's encoding in it.
type view int

const (
	viewFull  view = iota // everything (pb.View_VIEW_FULL)
	viewValue             // no constraints, metadata or creation fields (pb.View_VIEW_VALUE)
)

// framed returns ev encoded, in view v, as an element of a
// VariableUpdateBatch's updates (field 1, length-prefixed): from ev's memo
// when another stream encoded it already, else encoded now and left in
// the memo. The result is shared: it must not be modified.
func framed(ev *engine.Event, v view) []byte {
	if ev.Memo != nil {
		if b := ev.Memo.Load(int(v)); b != nil {
			return b
		}
	}
	b := appendMessage(make([]byte, 0, 256), 1, func(b []byte) []byte { return appendUpdate(b, ev, v) })
	if ev.Memo != nil {
		ev.Memo.Store(int(v), b)
	}
	return b
}

// appendFramed appends what framed returns, encoding straight into b on a
// memo miss (and leaving that part of b in the memo: b's bytes are never
// written again once appended, which sendBatches relies on too).
func appendFramed(b []byte, ev *engine.Event, v view) []byte {
	if ev.Memo != nil {
		if m := ev.Memo.Load(int(v)); m != nil {
			return append(b, m...)
		}
	}
	start := len(b)
	b = appendMessage(b, 1, func(b []byte) []byte { return appendUpdate(b, ev, v) })
	if ev.Memo != nil {
		ev.Memo.Store(int(v), b[start:len(b):len(b)])
	}
	return b
}

// unframe returns the VariableUpdate inside what framed returns.
func unframe(b []byte) []byte {
	_, _, n := protowire.ConsumeTag(b)
	v, _ := protowire.ConsumeBytes(b[n:])
	return v
}

// appendUpdate appends ev encoded as a VariableUpdate in view vw.
func appendUpdate(b []byte, ev *engine.Event, vw view) []byte {
	if v := ev.Variable; v != nil {
		b = appendString(b, 1, v.ID) // variable_id
		if vw == viewValue {
			b = appendMessage(b, 2, func(b []byte) []byte { return appendVariableValue(b, v) })
		} else {
			b = appendMessage(b, 2, func(b []byte) []byte { return appendVariable(b, v) })
		}
	}
	if !ev.OldValue.IsZero() {
		b = appendMessage(b, 3, func(b []byte) []byte { return appendValue(b, ev.OldValue) })
	}
	b = appendString(b, 4, ev.Source) // update_source
	if vw != viewValue {
		b = appendStringMap(b, 5, ev.Metadata)
	}
	b = appendTime(b, 6, ev.Time)
	b = appendString(b, 7, ev.Type.String()) // update_type
	b = appendInt(b, 8, ev.Revision)
	b = appendInt(b, 9, ev.Coalesced)
	b = appendInt(b, 10, ev.CoalescedFrom)
	b = appendString(b, 11, ev.Incarnation)
	return b
}

// appendVariable appends the fields of a Variable.
func appendVariable(b []byte, v *engine.Variable) []byte {
	b = appendString(b, 1, v.ID)
	b = appendString(b, 2, v.Name)
	b = appendInt(b, 3, int64(typeToProto(v.Type)))
	if !v.Value.IsZero() {
		b = appendMessage(b, 4, func(b []byte) []byte { return appendValue(b, v.Value) })
	}
	if c := v.Constraints; c != nil && !c.IsZero() {
		b = appendMessage(b, 5, func(b []byte) []byte { return appendConstraints(b, c) })
	}
	b = appendStringMap(b, 6, v.Metadata)
	b = appendInt(b, 7, v.Version)
	b = appendTime(b, 8, v.CreatedAt)
	b = appendTime(b, 9, v.UpdatedAt)
	b = appendInt(b, 10, v.CreateRevision)
	b = appendInt(b, 11, v.ModRevision)
	b = appendString(b, 12, v.Source)
	return b
}

// appendVariableValue appends the fields of a Variable that the VALUE
// view keeps: id, name, type, value, version and mod_revision.
func appendVariableValue(b []byte, v *engine.Variable) []byte {
	b = appendString(b, 1, v.ID)
	b = appendString(b, 2, v.Name)
	b = appendInt(b, 3, int64(typeToProto(v.Type)))
	if !v.Value.IsZero() {
		b = appendMessage(b, 4, func(b []byte) []byte { return appendValue(b, v.Value) })
	}
	b = appendInt(b, 7, v.Version)
	b = appendInt(b, 11, v.ModRevision)
	return b
}

// appendValue appends the fields of a Value: exactly one member of its
// oneof, which, being a oneof, is written even when zero.
func appendValue(b []byte, v engine.Value) []byte {
	switch v.Type() {
	case engine.TypeFloat:
		b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v.Float()))
	case engine.TypeInteger:
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.Integer()))
	case engine.TypeString:
		b = appendOneofString(b, 3, v.Str())
	case engine.TypeBoolean:
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v.Boolean()))
	case engine.TypeChoice:
		b = appendOneofString(b, 5, v.Str())
	case engine.TypeModule:
		b = appendOneofString(b, 6, v.Str())
	case engine.TypeEmbedding:
		b = appendMessage(b, 7, func(b []byte) []byte { return appendEmbedding(b, v) })
	case engine.TypeTensor:
		t := v.TensorView()
		b = appendMessage(b, 8, func(b []byte) []byte {
			b = appendPackedInts(b, 1, t.Shape)
			b = appendString(b, 2, t.DType)
			if len(t.Data) > 0 {
				b = protowire.AppendTag(b, 3, protowire.BytesType)
				b = protowire.AppendBytes(b, t.Data)
			}
			return b
		})
	}
	return b
}

// appendEmbedding appends an Embedding's packed float values.
func appendEmbedding(b []byte, v engine.Value) []byte {
	n := v.EmbeddingLen()
	if n == 0 {
		return b
	}
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(4*n))
	for i := range n {
		b = protowire.AppendFixed32(b, math.Float32bits(v.EmbeddingAt(i)))
	}
	return b
}

// appendConstraints appends the fields of Constraints; the optional ones
// are written whenever set, zero included (explicit presence).
func appendConstraints(b []byte, c *engine.Constraints) []byte {
	if c.Min != nil {
		b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(*c.Min))
	}
	if c.Max != nil {
		b = protowire.AppendTag(b, 2, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(*c.Max))
	}
	for num, p := range [...]*int64{3: c.MinInteger, 4: c.MaxInteger, 5: c.MinLength, 6: c.MaxLength} {
		if p != nil {
			b = protowire.AppendTag(b, protowire.Number(num), protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(*p))
		}
	}
	b = appendString(b, 7, c.Pattern)
	for _, s := range c.Choices {
		b = appendOneofString(b, 8, s)
	}
	for _, s := range c.AllowedModules {
		b = appendOneofString(b, 9, s)
	}
	b = appendInt(b, 10, int64(int32(c.Dimensions)))
	b = appendPackedInts(b, 11, c.Shape)
	return b
}

// appendMessage appends field num holding the message body writes. The
// body is written in place after a one-byte length guess, and moved if
// the length needs more bytes: most bodies here are under 128 bytes.
func appendMessage(b []byte, num protowire.Number, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	at := len(b)
	b = append(b, 0)
	b = body(b)
	n := len(b) - at - 1
	if n < 0x80 {
		b[at] = byte(n)
		return b
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	b = append(b, make([]byte, extra)...)
	copy(b[at+1+extra:], b[at+1:at+1+n])
	protowire.AppendVarint(b[:at], uint64(n))
	return b
}

// appendString appends a proto3 string field, omitted when empty.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendOneofString(b, num, s)
}

// appendOneofString appends a string field even when empty (oneof members
// and repeated elements are always written).
func appendOneofString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendInt appends a proto3 int64 (or enum, or int32) field, omitted when
// zero.
func appendInt(b []byte, num protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

// appendPackedInts appends a packed repeated int64 field, omitted when
// empty.
func appendPackedInts(b []byte, num protowire.Number, vs []int64) []byte {
	if len(vs) == 0 {
		return b
	}
	n := 0
	for _, v := range vs {
		n += protowire.SizeVarint(uint64(v))
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	for _, v := range vs {
		b = protowire.AppendVarint(b, uint64(v))
	}
	return b
}

// appendStringMap appends a map<string, string> field: one entry message
// (key 1, value 2) per pair.
func appendStringMap(b []byte, num protowire.Number, m map[string]string) []byte {
	for k, v := range m {
		b = appendMessage(b, num, func(b []byte) []byte {
			return appendString(appendString(b, 1, k), 2, v)
		})
	}
	return b
}

// appendTime appends a google.protobuf.Timestamp field; the zero time is
// unset, as in timeToProto.
func appendTime(b []byte, num protowire.Number, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	return appendMessage(b, num, func(b []byte) []byte {
		b = appendInt(b, 1, t.Unix())
		return appendInt(b, 2, int64(t.Nanosecond()))
	})
}
