package cli

import (
	"encoding/base64"
	"flag"
	"io"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

func TestParseAndFormatValue(t *testing.T) {
	f32 := func(xs ...float32) []byte {
		var b []byte
		for _, x := range xs {
			u := math.Float32bits(x)
			b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
		}
		return b
	}
	tensor := func(dtype string, data []byte, shape ...int64) *pb.Value {
		return &pb.Value{Kind: &pb.Value_TensorValue{TensorValue: &pb.Tensor{Dtype: dtype, Shape: shape, Data: data}}}
	}
	tests := []struct {
		typ   string
		text  string
		want  *pb.Value
		shown string // formatValue of want; "" means text
	}{
		{"float", "21.5", &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: 21.5}}, ""},
		{"float", "-3", &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: -3}}, ""},
		{"float", "1e-9", &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: 1e-9}}, "1e-09"},
		{"integer", "-42", &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: -42}}, ""},
		{"int", "9223372036854775807", &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: math.MaxInt64}}, ""},
		{"string", "hello world", &pb.Value{Kind: &pb.Value_StringValue{StringValue: "hello world"}}, `"hello world"`},
		{"string", "", &pb.Value{Kind: &pb.Value_StringValue{}}, `""`},
		{"boolean", "true", &pb.Value{Kind: &pb.Value_BooleanValue{BooleanValue: true}}, ""},
		{"bool", "false", &pb.Value{Kind: &pb.Value_BooleanValue{}}, ""},
		{"choice", "eco", &pb.Value{Kind: &pb.Value_ChoiceValue{ChoiceValue: "eco"}}, ""},
		{"module", "torch.nn", &pb.Value{Kind: &pb.Value_ModuleValue{ModuleValue: "torch.nn"}}, ""},
		{"embedding", "0.1,0.2,-0.3", &pb.Value{Kind: &pb.Value_EmbeddingValue{EmbeddingValue: &pb.Embedding{Values: []float32{0.1, 0.2, -0.3}}}}, "[0.1,0.2,-0.3]"},
		{"embedding", "[1, 2]", &pb.Value{Kind: &pb.Value_EmbeddingValue{EmbeddingValue: &pb.Embedding{Values: []float32{1, 2}}}}, "[1,2]"},
		{"embedding", "[]", &pb.Value{Kind: &pb.Value_EmbeddingValue{EmbeddingValue: &pb.Embedding{}}}, ""},
		{"tensor", "float32:2,2:[1,2,3,4.5]", tensor("float32", f32(1, 2, 3, 4.5), 2, 2), ""},
		{"tensor", "int8:3:[-1,0,127]", tensor("int8", []byte{0xff, 0, 127}, 3), ""},
		{"tensor", "uint16:2:[1,65535]", tensor("uint16", []byte{1, 0, 0xff, 0xff}, 2), ""},
		{"tensor", "int64:1:[-2]", tensor("int64", []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1), ""},
		{"tensor", "float64::[1.5]", tensor("float64", []byte{0, 0, 0, 0, 0, 0, 0xf8, 0x3f}), ""},
		{"tensor", "bool:2:[true,false]", tensor("bool", []byte{1, 0}, 2), ""},
		{"tensor", "float16:2:ADwAQA==", tensor("float16", []byte{0, 0x3c, 0, 0x40}, 2), ""},
		{"tensor", "uint8:2,2:AQIDBA==", tensor("uint8", []byte{1, 2, 3, 4}, 2, 2), "uint8:2,2:[1,2,3,4]"},
		{"tensor", "uint8:64:" + base64.StdEncoding.EncodeToString(make([]byte, 64)), tensor("uint8", make([]byte, 64), 64), "uint8:64:(64 bytes)"},
	}
	for _, tc := range tests {
		t.Run(tc.typ+" "+tc.text, func(t *testing.T) {
			typ, err := parseType(tc.typ)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseValue(typ, tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.want) {
				t.Fatalf("parseValue = %v, want %v", got, tc.want)
			}
			shown := tc.shown
			if shown == "" {
				shown = tc.text
			}
			if s := formatValue(got); s != shown {
				t.Fatalf("formatValue = %q, want %q", s, shown)
			}
		})
	}
}

func TestParseValueRejects(t *testing.T) {
	tests := []struct{ typ, text string }{
		{"float", "warm"},
		{"integer", "1.5"},
		{"integer", "99999999999999999999"},
		{"boolean", "yes"},
		{"embedding", "1,x"},
		{"embedding", "[1,2"},
		{"tensor", "float32:2"},
		{"tensor", "float32:a:[1]"},
		{"tensor", "float16:1:[1]"},
		{"tensor", "int8:1:[300]"},
		{"tensor", "uint8:1:[-1]"},
		{"tensor", "uint8:1:!!"},
	}
	for _, tc := range tests {
		t.Run(tc.typ+" "+tc.text, func(t *testing.T) {
			typ, _ := parseType(tc.typ)
			if v, err := parseValue(typ, tc.text); err == nil {
				t.Fatalf("parseValue(%s, %q) = %v, want an error", tc.typ, tc.text, v)
			}
		})
	}
	if _, err := parseType("colour"); err == nil {
		t.Fatal(`parseType("colour") succeeded`)
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		src  string
	}{
		{[]string{"s", "t", "22"}, []string{"s", "t", "22"}, ""},
		{[]string{"s", "--source", "me", "t", "22"}, []string{"s", "t", "22"}, "me"},
		{[]string{"s", "t", "22", "--source=me"}, []string{"s", "t", "22"}, "me"},
		{[]string{"s", "t", "-5", "--source", "me"}, []string{"s", "t", "-5"}, "me"},
		{[]string{"s", "t", "-0.5,1"}, []string{"s", "t", "-0.5,1"}, ""},
		{[]string{"s", "--", "--source", "-x"}, []string{"s", "--source", "-x"}, ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			src := fs.String("source", "", "")
			pos, err := parseInterspersed(fs, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tc.pos) || *src != tc.src {
				t.Fatalf("positional %q, source %q; want %q, %q", pos, *src, tc.pos, tc.src)
			}
		})
	}
}
