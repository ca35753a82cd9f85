package grpcapi

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

func TestValueRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		v    *pb.Value
		typ  engine.Type
	}{
		{"float", floatV(-2.5), engine.TypeFloat},
		{"integer", intV(-7), engine.TypeInteger},
		{"string", strV("héllo"), engine.TypeString},
		{"boolean", boolV(true), engine.TypeBoolean},
		{"choice", choiceV("a"), engine.TypeChoice},
		{"module", moduleV("m.x"), engine.TypeModule},
		{"embedding", embV(0.5, -1), engine.TypeEmbedding},
		{"tensor", tensorV("int16", []byte{1, 0, 2, 0}, 2), engine.TypeTensor},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := valueFromProto(tc.v, "value")
			if err != nil {
				t.Fatal(err)
			}
			if v.Type() != tc.typ {
				t.Fatalf("type %v, want %v", v.Type(), tc.typ)
			}
			if back := valueToProto(v); !proto.Equal(back, tc.v) {
				t.Fatalf("round trip %v, want %v", back, tc.v)
			}
			if got := typeToProto(tc.typ); got == pb.VariableType_VARIABLE_TYPE_UNSPECIFIED {
				t.Fatalf("typeToProto(%v) unspecified", tc.typ)
			} else if back, err := typeFromProto(got); err != nil || back != tc.typ {
				t.Fatalf("typeFromProto(%v) = %v, %v", got, back, err)
			}
		})
	}
	if valueToProto(engine.Value{}) != nil {
		t.Fatal("the zero Value must map to nil")
	}
}

func TestValueFromProtoRejects(t *testing.T) {
	for _, v := range []*pb.Value{nil, {}} {
		if _, err := valueFromProto(v, "value"); codeFor(err) != codes.InvalidArgument {
			t.Errorf("valueFromProto(%v) = %v, want INVALID_ARGUMENT", v, err)
		}
	}
}

func TestConstraintsRoundTrip(t *testing.T) {
	c := &pb.Constraints{Min: proto.Float64(1), Max: proto.Float64(2), MinInteger: proto.Int64(3), MaxInteger: proto.Int64(4),
		MinLength: proto.Int64(5), MaxLength: proto.Int64(6), Pattern: "p", Choices: []string{"a"},
		AllowedModules: []string{"m"}, Dimensions: 7, Shape: []int64{8, -1}}
	if back := constraintsToProto(constraintsFromProto(c)); !proto.Equal(back, c) {
		t.Fatalf("round trip %v, want %v", back, c)
	}
	if constraintsToProto(constraintsFromProto(nil)) != nil {
		t.Fatal("no constraints must map to nil")
	}
}
