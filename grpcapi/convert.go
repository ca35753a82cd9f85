package grpcapi

import (
	"maps"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// This file converts between wire messages and engine values. Conversions
// from the wire reject what the engine cannot even express (a Value with no
// kind set, an unknown VariableType, a malformed Duration) with
// INVALID_ARGUMENT; everything the engine can express is left for the
// engine to judge, so there is one source of truth for value rules.

// wireTypes maps each engine type to its wire type; both directions of
// the mapping read it.
var wireTypes = [...]pb.VariableType{
	engine.TypeFloat:     pb.VariableType_VARIABLE_TYPE_FLOAT,
	engine.TypeInteger:   pb.VariableType_VARIABLE_TYPE_INTEGER,
	engine.TypeString:    pb.VariableType_VARIABLE_TYPE_STRING,
	engine.TypeBoolean:   pb.VariableType_VARIABLE_TYPE_BOOLEAN,
	engine.TypeChoice:    pb.VariableType_VARIABLE_TYPE_CHOICE,
	engine.TypeModule:    pb.VariableType_VARIABLE_TYPE_MODULE,
	engine.TypeEmbedding: pb.VariableType_VARIABLE_TYPE_EMBEDDING,
	engine.TypeTensor:    pb.VariableType_VARIABLE_TYPE_TENSOR,
}

// typeFromProto maps a wire type to an engine type.
func typeFromProto(t pb.VariableType) (engine.Type, error) {
	if t == pb.VariableType_VARIABLE_TYPE_UNSPECIFIED {
		return 0, invalidf("variable type is not set")
	}
	for et, wt := range wireTypes {
		if wt == t {
			return engine.Type(et), nil
		}
	}
	return 0, invalidf("unknown variable type %d", int32(t))
}

// typeToProto maps an engine type to its wire type (unspecified for the
// zero Type).
func typeToProto(t engine.Type) pb.VariableType {
	if t > 0 && int(t) < len(wireTypes) {
		return wireTypes[t]
	}
	return pb.VariableType_VARIABLE_TYPE_UNSPECIFIED
}

// valueFromProto maps a wire value to an engine value. field names the
// request field for the error message ("value", "initial_value").
func valueFromProto(v *pb.Value, field string) (engine.Value, error) {
	switch k := v.GetKind().(type) {
	case *pb.Value_FloatValue:
		return engine.Float(k.FloatValue), nil
	case *pb.Value_IntegerValue:
		return engine.Integer(k.IntegerValue), nil
	case *pb.Value_StringValue:
		return engine.String(k.StringValue), nil
	case *pb.Value_BooleanValue:
		return engine.Boolean(k.BooleanValue), nil
	case *pb.Value_ChoiceValue:
		return engine.Choice(k.ChoiceValue), nil
	case *pb.Value_ModuleValue:
		return engine.Module(k.ModuleValue), nil
	case *pb.Value_EmbeddingValue:
		return engine.Embedding(k.EmbeddingValue.GetValues()), nil
	case *pb.Value_TensorValue:
		t := k.TensorValue
		return engine.TensorOf(engine.Tensor{Shape: t.GetShape(), DType: t.GetDtype(), Data: t.GetData()}), nil
	case nil:
		if v == nil {
			return engine.Value{}, invalidf("%s is missing", field)
		}
		return engine.Value{}, invalidf("%s has no kind set (set one of float_value, integer_value, string_value, boolean_value, choice_value, module_value, embedding_value, tensor_value)", field)
	}
	return engine.Value{}, invalidf("%s has an unknown kind", field)
}

// valueToProto maps an engine value to the wire; the zero Value ("no
// value") becomes nil.
func valueToProto(v engine.Value) *pb.Value {
	switch v.Type() {
	case engine.TypeFloat:
		return &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: v.Float()}}
	case engine.TypeInteger:
		return &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: v.Integer()}}
	case engine.TypeString:
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: v.Str()}}
	case engine.TypeBoolean:
		return &pb.Value{Kind: &pb.Value_BooleanValue{BooleanValue: v.Boolean()}}
	case engine.TypeChoice:
		return &pb.Value{Kind: &pb.Value_ChoiceValue{ChoiceValue: v.Str()}}
	case engine.TypeModule:
		return &pb.Value{Kind: &pb.Value_ModuleValue{ModuleValue: v.Str()}}
	case engine.TypeEmbedding:
		return &pb.Value{Kind: &pb.Value_EmbeddingValue{EmbeddingValue: &pb.Embedding{Values: v.Embedding()}}}
	case engine.TypeTensor:
		t := v.Tensor()
		return &pb.Value{Kind: &pb.Value_TensorValue{TensorValue: &pb.Tensor{Shape: t.Shape, Dtype: t.DType, Data: t.Data}}}
	}
	return nil
}

// constraintsFromProto maps wire constraints to engine constraints. Which
// constraint fits which type is the engine's rule, checked at registration.
func constraintsFromProto(c *pb.Constraints) engine.Constraints {
	if c == nil {
		return engine.Constraints{}
	}
	return engine.Constraints{
		Min:            c.Min,
		Max:            c.Max,
		MinInteger:     c.MinInteger,
		MaxInteger:     c.MaxInteger,
		MinLength:      c.MinLength,
		MaxLength:      c.MaxLength,
		Pattern:        c.GetPattern(),
		Choices:        c.GetChoices(),
		AllowedModules: c.GetAllowedModules(),
		Dimensions:     int(c.GetDimensions()),
		Shape:          c.GetShape(),
	}
}

// constraintsToProto maps engine constraints to the wire; no constraint at
// all becomes nil.
func constraintsToProto(c engine.Constraints) *pb.Constraints {
	if c.IsZero() {
		return nil
	}
	return &pb.Constraints{
		Min:            c.Min,
		Max:            c.Max,
		MinInteger:     c.MinInteger,
		MaxInteger:     c.MaxInteger,
		MinLength:      c.MinLength,
		MaxLength:      c.MaxLength,
		Pattern:        c.Pattern,
		Choices:        c.Choices,
		AllowedModules: c.AllowedModules,
		Dimensions:     int32(c.Dimensions),
		Shape:          c.Shape,
	}
}

// variableToProto maps a variable to the wire; nil stays nil. The engine's
// variables are immutable and shared, while a wire message is anybody's to
// change (interceptors, in-process callers of Server), so maps and slices
// are copied rather than aliased.
func variableToProto(v *engine.Variable) *pb.Variable {
	if v == nil {
		return nil
	}
	return &pb.Variable{
		Id:               v.ID,
		Name:             v.Name,
		Type:             typeToProto(v.Type),
		Value:            valueToProto(v.Value),
		Constraints:      constraintsToProto(cloneConstraints(v.Constraints)),
		Metadata:         maps.Clone(v.Metadata),
		Version:          v.Version,
		CreatedAt:        timeToProto(v.CreatedAt),
		LastUpdatedAt:    timeToProto(v.UpdatedAt),
		CreateRevision:   v.CreateRevision,
		ModRevision:      v.ModRevision,
		LastUpdateSource: v.Source,
	}
}

func variablesToProto(vs []*engine.Variable) []*pb.Variable {
	out := make([]*pb.Variable, len(vs))
	for i, v := range vs {
		out[i] = variableToProto(v)
	}
	return out
}

func cloneConstraints(p *engine.Constraints) engine.Constraints {
	if p == nil {
		return engine.Constraints{}
	}
	c := *p
	c.Min, c.Max = clonePtr(c.Min), clonePtr(c.Max)
	c.MinInteger, c.MaxInteger = clonePtr(c.MinInteger), clonePtr(c.MaxInteger)
	c.MinLength, c.MaxLength = clonePtr(c.MinLength), clonePtr(c.MaxLength)
	c.Choices = append([]string(nil), c.Choices...)
	c.AllowedModules = append([]string(nil), c.AllowedModules...)
	c.Shape = append([]int64(nil), c.Shape...)
	return c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// sessionToProto maps session info to the wire.
func sessionToProto(s engine.SessionInfo) *pb.Session {
	return &pb.Session{
		Id:            s.ID,
		Metadata:      s.Metadata,
		CreatedAt:     timeToProto(s.CreatedAt),
		LastUsedAt:    timeToProto(s.LastUsedAt),
		ExpiresAt:     timeToProto(s.ExpiresAt),
		Ttl:           durationpb.New(s.TTL),
		VariableCount: int64(s.VariableCount),
		Revision:      s.Revision,
		Incarnation:   s.Incarnation,
	}
}

// eventToProto maps a subscription event to a VariableUpdate. update_type
// is the event type's wire name, and revision is set on every update.
func eventToProto(ev *engine.Event) *pb.VariableUpdate {
	return &pb.VariableUpdate{
		VariableId:     ev.VariableID(),
		Variable:       variableToProto(ev.Variable),
		OldValue:       valueToProto(ev.OldValue),
		UpdateSource:   ev.Source,
		UpdateMetadata: maps.Clone(ev.Metadata),
		Timestamp:      timeToProto(ev.Time),
		UpdateType:     ev.Type.String(),
		Revision:       ev.Revision,
		// Set only by coalescing subscriptions.
		CoalescedCount:        ev.Coalesced,
		CoalescedFromRevision: ev.CoalescedFrom,
		Incarnation:           ev.Incarnation,
	}
}

// durationFromProto maps an optional wire duration: unset is zero. A
// malformed or negative duration is INVALID_ARGUMENT naming field.
func durationFromProto(d *durationpb.Duration, field string) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, invalidf("%s: %v", field, err)
	}
	v := d.AsDuration()
	if v < 0 {
		return 0, invalidf("%s is negative (%s)", field, v)
	}
	return v, nil
}

// timeToProto maps a wall-clock time to the wire; the zero time is unset.
func timeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
