package cli

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// This file is the one place where values meet text: register and set
// parse with parseValue, and get, list and watch print with formatValue.
//
// Text forms, by type:
//
//	float      21.5, -3, 1e-9, NaN, Inf
//	integer    42, -7
//	string     any text, taken as is
//	boolean    true or false
//	choice     one of the variable's choices, as is
//	module     a module name, as is
//	embedding  0.1,0.2,0.3 (brackets and spaces allowed: "[0.1, 0.2]"; "" or [] is empty)
//	tensor     DTYPE:SHAPE:DATA, SHAPE comma-separated (empty for a scalar),
//	           DATA either a bracketed number list in row-major order
//	           (float32:2,2:[1,2,3,4]; any dtype but float16 and bfloat16)
//	           or the raw little-endian bytes in standard base64
//	           (float16:2:ADwAQA==)

// typeNames are the type names the command line accepts, with their
// wire types; the first name of each type is the one printed.
var typeNames = []struct {
	name string
	typ  pb.VariableType
}{
	{"float", pb.VariableType_VARIABLE_TYPE_FLOAT},
	{"integer", pb.VariableType_VARIABLE_TYPE_INTEGER},
	{"int", pb.VariableType_VARIABLE_TYPE_INTEGER},
	{"string", pb.VariableType_VARIABLE_TYPE_STRING},
	{"boolean", pb.VariableType_VARIABLE_TYPE_BOOLEAN},
	{"bool", pb.VariableType_VARIABLE_TYPE_BOOLEAN},
	{"choice", pb.VariableType_VARIABLE_TYPE_CHOICE},
	{"module", pb.VariableType_VARIABLE_TYPE_MODULE},
	{"embedding", pb.VariableType_VARIABLE_TYPE_EMBEDDING},
	{"tensor", pb.VariableType_VARIABLE_TYPE_TENSOR},
}

// parseType parses a type name.
func parseType(s string) (pb.VariableType, error) {
	for _, t := range typeNames {
		if t.name == strings.ToLower(s) {
			return t.typ, nil
		}
	}
	return 0, fmt.Errorf("unknown type %q (want float, integer, string, boolean, choice, module, embedding or tensor)", s)
}

// typeName is the printed name of a type.
func typeName(t pb.VariableType) string {
	for _, n := range typeNames {
		if n.typ == t {
			return n.name
		}
	}
	return strings.ToLower(strings.TrimPrefix(t.String(), "VARIABLE_TYPE_"))
}

// parseValue parses text as a value of type typ.
func parseValue(typ pb.VariableType, text string) (*pb.Value, error) {
	bad := func(err error) (*pb.Value, error) {
		return nil, fmt.Errorf("%q is not a valid %s value: %v", text, typeName(typ), err)
	}
	switch typ {
	case pb.VariableType_VARIABLE_TYPE_FLOAT:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return bad(numErr(err))
		}
		return &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: f}}, nil
	case pb.VariableType_VARIABLE_TYPE_INTEGER:
		i, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return bad(numErr(err))
		}
		return &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: i}}, nil
	case pb.VariableType_VARIABLE_TYPE_STRING:
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: text}}, nil
	case pb.VariableType_VARIABLE_TYPE_BOOLEAN:
		switch text {
		case "true":
			return &pb.Value{Kind: &pb.Value_BooleanValue{BooleanValue: true}}, nil
		case "false":
			return &pb.Value{Kind: &pb.Value_BooleanValue{BooleanValue: false}}, nil
		}
		return bad(fmt.Errorf("want true or false"))
	case pb.VariableType_VARIABLE_TYPE_CHOICE:
		return &pb.Value{Kind: &pb.Value_ChoiceValue{ChoiceValue: text}}, nil
	case pb.VariableType_VARIABLE_TYPE_MODULE:
		return &pb.Value{Kind: &pb.Value_ModuleValue{ModuleValue: text}}, nil
	case pb.VariableType_VARIABLE_TYPE_EMBEDDING:
		elems, err := splitList(text)
		if err != nil {
			return bad(err)
		}
		var vals []float32
		for _, f := range elems {
			x, err := strconv.ParseFloat(f, 32)
			if err != nil {
				return bad(numErr(err))
			}
			vals = append(vals, float32(x))
		}
		return &pb.Value{Kind: &pb.Value_EmbeddingValue{EmbeddingValue: &pb.Embedding{Values: vals}}}, nil
	case pb.VariableType_VARIABLE_TYPE_TENSOR:
		t, err := parseTensor(text)
		if err != nil {
			return bad(err)
		}
		return &pb.Value{Kind: &pb.Value_TensorValue{TensorValue: t}}, nil
	}
	return nil, fmt.Errorf("cannot parse values of type %s", typeName(typ))
}

// numErr drops strconv's repetition of the input from its errors.
func numErr(err error) error {
	if ne, ok := err.(*strconv.NumError); ok {
		return ne.Err
	}
	return err
}

// splitList splits "1,2,3", "[1, 2, 3]" or "" into its elements.
func splitList(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if open, closed := strings.HasPrefix(s, "["), strings.HasSuffix(s, "]"); open != closed {
		return nil, fmt.Errorf("unbalanced brackets")
	} else if open {
		s = s[1 : len(s)-1]
	}
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts, nil
}

// parseInts parses a comma-separated list of integers ("2,3").
func parseInts(s string) ([]int64, error) {
	elems, err := splitList(s)
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, f := range elems {
		i, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", f)
		}
		out = append(out, i)
	}
	return out, nil
}

// elementCodec encodes and decodes one tensor element of a dtype that has
// a number-list form.
type elementCodec struct {
	size   int
	encode func(b []byte, s string) error
	decode func(b []byte) string
}

func intCodec(size int, signed bool) elementCodec {
	bits := size * 8
	put := func(b []byte, u uint64) {
		for i := range size {
			b[i] = byte(u >> (8 * i))
		}
	}
	get := func(b []byte) uint64 {
		var u uint64
		for i := range size {
			u |= uint64(b[i]) << (8 * i)
		}
		return u
	}
	if signed {
		return elementCodec{size,
			func(b []byte, s string) error {
				i, err := strconv.ParseInt(s, 10, bits)
				put(b, uint64(i))
				return numErr(err)
			},
			func(b []byte) string {
				u := get(b) << (64 - bits)
				return strconv.FormatInt(int64(u)>>(64-bits), 10)
			}}
	}
	return elementCodec{size,
		func(b []byte, s string) error {
			u, err := strconv.ParseUint(s, 10, bits)
			put(b, u)
			return numErr(err)
		},
		func(b []byte) string { return strconv.FormatUint(get(b), 10) }}
}

var elementCodecs = map[string]elementCodec{
	"int8": intCodec(1, true), "int16": intCodec(2, true), "int32": intCodec(4, true), "int64": intCodec(8, true),
	"uint8": intCodec(1, false), "uint16": intCodec(2, false), "uint32": intCodec(4, false), "uint64": intCodec(8, false),
	"float32": {4,
		func(b []byte, s string) error {
			f, err := strconv.ParseFloat(s, 32)
			binary.LittleEndian.PutUint32(b, math.Float32bits(float32(f)))
			return numErr(err)
		},
		func(b []byte) string {
			return strconv.FormatFloat(float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), 'g', -1, 32)
		}},
	"float64": {8,
		func(b []byte, s string) error {
			f, err := strconv.ParseFloat(s, 64)
			binary.LittleEndian.PutUint64(b, math.Float64bits(f))
			return numErr(err)
		},
		func(b []byte) string {
			return strconv.FormatFloat(math.Float64frombits(binary.LittleEndian.Uint64(b)), 'g', -1, 64)
		}},
	"bool": {1,
		func(b []byte, s string) error {
			switch s {
			case "true", "1":
				b[0] = 1
			case "false", "0":
				b[0] = 0
			default:
				return fmt.Errorf("want true or false")
			}
			return nil
		},
		func(b []byte) string { return strconv.FormatBool(b[0] != 0) }},
}

// parseTensor parses DTYPE:SHAPE:DATA.
func parseTensor(text string) (*pb.Tensor, error) {
	parts := strings.SplitN(text, ":", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("want DTYPE:SHAPE:DATA, e.g. float32:2,2:[1,2,3,4]")
	}
	shape, err := parseInts(parts[1])
	if err != nil {
		return nil, fmt.Errorf("shape: %v", err)
	}
	t := &pb.Tensor{Dtype: parts[0], Shape: shape}
	data := strings.TrimSpace(parts[2])
	if !strings.HasPrefix(data, "[") {
		if t.Data, err = base64.StdEncoding.DecodeString(data); err != nil {
			return nil, fmt.Errorf("data is neither a [number list] nor base64: %v", err)
		}
		return t, nil
	}
	codec, ok := elementCodecs[t.Dtype]
	if !ok {
		return nil, fmt.Errorf("dtype %q has no number-list form; give the data in base64", t.Dtype)
	}
	elems, err := splitList(data)
	if err != nil {
		return nil, fmt.Errorf("data: %v", err)
	}
	t.Data = make([]byte, len(elems)*codec.size)
	for i, e := range elems {
		if err := codec.encode(t.Data[i*codec.size:], e); err != nil {
			return nil, fmt.Errorf("element %d %q: %v", i, e, err)
		}
	}
	return t, nil
}

// formatValue prints a value for people. Floats, integers, booleans,
// choices and modules print as they are typed; strings are quoted so that
// spaces and empty strings show; embeddings and small tensors print in
// their input form; large ones are summarized.
func formatValue(v *pb.Value) string {
	switch k := v.GetKind().(type) {
	case *pb.Value_FloatValue:
		return strconv.FormatFloat(k.FloatValue, 'g', -1, 64)
	case *pb.Value_IntegerValue:
		return strconv.FormatInt(k.IntegerValue, 10)
	case *pb.Value_StringValue:
		return strconv.Quote(k.StringValue)
	case *pb.Value_BooleanValue:
		return strconv.FormatBool(k.BooleanValue)
	case *pb.Value_ChoiceValue:
		return k.ChoiceValue
	case *pb.Value_ModuleValue:
		return k.ModuleValue
	case *pb.Value_EmbeddingValue:
		vals := k.EmbeddingValue.GetValues()
		const show = 8
		parts := make([]string, 0, min(len(vals), show))
		for _, x := range vals[:min(len(vals), show)] {
			parts = append(parts, strconv.FormatFloat(float64(x), 'g', -1, 32))
		}
		if len(vals) > show {
			return fmt.Sprintf("[%s,...] (%d values)", strings.Join(parts, ","), len(vals))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case *pb.Value_TensorValue:
		return formatTensor(k.TensorValue)
	}
	return "<none>"
}

func formatTensor(t *pb.Tensor) string {
	shape := make([]string, len(t.GetShape()))
	for i, d := range t.GetShape() {
		shape[i] = strconv.FormatInt(d, 10)
	}
	head := t.GetDtype() + ":" + strings.Join(shape, ",") + ":"
	data := t.GetData()
	const show = 16
	if codec, ok := elementCodecs[t.GetDtype()]; ok && len(data)%codec.size == 0 && len(data)/codec.size <= show {
		parts := make([]string, len(data)/codec.size)
		for i := range parts {
			parts[i] = codec.decode(data[i*codec.size:])
		}
		return head + "[" + strings.Join(parts, ",") + "]"
	}
	if len(data) <= 48 {
		return head + base64.StdEncoding.EncodeToString(data)
	}
	return fmt.Sprintf("%s(%d bytes)", head, len(data))
}
