package abi

import (
	"encoding/binary"
	"math"
)

// Sizes of the fixed parts of the layout (see ABI.md).
const (
	// recordFixed is revision, time, kind, type and two reserved bytes.
	recordFixed = 8 + 8 + 1 + 1 + 2
	// NewValueOffset is where a record's new value starts, counted from the
	// record's size prefix: guests without a decoder (the WAT and C
	// examples) read a float's tag and bits at fixed offsets from it.
	NewValueOffset = 4 + recordFixed
)

// Verdict flags after a Replace action byte.
const (
	flagNew      = 1
	flagMetadata = 2
	flagOld      = 4
	flagsKnown   = flagNew | flagMetadata | flagOld
)

var le = binary.LittleEndian

// AppendBatch appends the encoding of a whole batch to buf.
func AppendBatch(buf []byte, us []Update) []byte {
	buf = le.AppendUint32(buf, uint32(len(us)))
	for i := range us {
		buf = AppendUpdate(buf, &us[i], nil, nil, nil)
	}
	return buf
}

// AppendBatchHeader appends a batch's count; AppendUpdate then appends each
// of its n records.
func AppendBatchHeader(buf []byte, n int) []byte { return le.AppendUint32(buf, uint32(n)) }

// AppendUpdate appends u's record to buf. newV, oldV and md, when non-nil,
// stand in for u.New, u.Old and u.Metadata: a chain hands earlier stages'
// replacements to later stages this way without copying updates.
func AppendUpdate(buf []byte, u *Update, newV, oldV *Value, md Metadata) []byte {
	if newV == nil {
		newV = &u.New
	}
	if oldV == nil {
		oldV = &u.Old
	}
	if md == nil {
		md = u.Metadata
	}
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0) // size, patched below
	buf = le.AppendUint64(buf, uint64(u.Revision))
	buf = le.AppendUint64(buf, uint64(u.Time))
	buf = append(buf, byte(u.Kind), byte(u.Type), 0, 0)
	buf = AppendValue(buf, newV)
	buf = AppendValue(buf, oldV)
	buf = appendStr(buf, u.ID)
	buf = appendStr(buf, u.Name)
	buf = appendStr(buf, u.Source)
	buf = AppendMetadata(buf, md)
	le.PutUint32(buf[start:], uint32(len(buf)-start-4))
	return buf
}

// AppendValue appends one tagged value.
func AppendValue(buf []byte, v *Value) []byte {
	buf = append(buf, byte(v.Type))
	switch v.Type {
	case TypeFloat:
		buf = le.AppendUint64(buf, math.Float64bits(v.Float))
	case TypeInteger:
		buf = le.AppendUint64(buf, uint64(v.Int))
	case TypeString, TypeChoice, TypeModule:
		buf = appendStr(buf, v.Str)
	case TypeBoolean:
		b := byte(0)
		if v.Bool {
			b = 1
		}
		buf = append(buf, b)
	case TypeEmbedding:
		buf = le.AppendUint32(buf, uint32(len(v.Embedding)))
		for _, f := range v.Embedding {
			buf = le.AppendUint32(buf, math.Float32bits(f))
		}
	case TypeTensor:
		t := v.Tensor
		if t == nil {
			t = &Tensor{}
		}
		buf = le.AppendUint32(buf, uint32(len(t.Shape)))
		for _, d := range t.Shape {
			buf = le.AppendUint64(buf, uint64(d))
		}
		buf = appendStr(buf, t.DType)
		buf = le.AppendUint32(buf, uint32(len(t.Data)))
		buf = append(buf, t.Data...)
	}
	return buf
}

// AppendMetadata appends a metadata list (also the encoding of params).
func AppendMetadata(buf []byte, md Metadata) []byte {
	buf = le.AppendUint32(buf, uint32(len(md)))
	for _, kv := range md {
		buf = appendStr(buf, kv.Key)
		buf = appendStr(buf, kv.Value)
	}
	return buf
}

// AppendParams appends a plugin's params as the bytes varwatch_init gets:
// the metadata encoding of the entries sorted by key.
func AppendParams(buf []byte, params map[string]string) []byte {
	return AppendMetadata(buf, MetadataFromMap(params))
}

// AppendVerdicts appends a verdict list: what varwatch_filter returns.
func AppendVerdicts(buf []byte, vs []Verdict) []byte {
	buf = le.AppendUint32(buf, uint32(len(vs)))
	for i := range vs {
		buf = AppendVerdict(buf, &vs[i])
	}
	return buf
}

// AppendVerdict appends one verdict. A Replace with nothing to replace is
// written as a Pass, the cheapest encoding of the same decision.
func AppendVerdict(buf []byte, v *Verdict) []byte {
	if v.Action != Replace {
		return append(buf, byte(v.Action))
	}
	var flags byte
	if v.New != nil {
		flags |= flagNew
	}
	if v.Metadata != nil {
		flags |= flagMetadata
	}
	if v.Old != nil {
		flags |= flagOld
	}
	if flags == 0 {
		return append(buf, byte(Pass))
	}
	buf = append(buf, byte(Replace), flags)
	if v.New != nil {
		buf = AppendValue(buf, v.New)
	}
	if v.Metadata != nil {
		buf = AppendMetadata(buf, v.Metadata)
	}
	if v.Old != nil {
		buf = AppendValue(buf, v.Old)
	}
	return buf
}

func appendStr(buf []byte, s string) []byte {
	buf = le.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}
