package grpcapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// snapshot is everything observable about the server's state, less the
// timestamps that every use of a session refreshes (a failed call naming a
// session still counts as its use).
func (h *harness) snapshot() []proto.Message {
	h.t.Helper()
	list, err := h.client.ListSessions(h.ctx(), &pb.ListSessionsRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []proto.Message
	for _, s := range list.GetSessions() {
		vars, err := h.client.ListVariables(h.ctx(), &pb.ListVariablesRequest{SessionId: s.GetId()})
		if err != nil {
			h.t.Fatal(err)
		}
		s.LastUsedAt, s.ExpiresAt = nil, nil
		out = append(out, s, vars)
	}
	return out
}

func sameState(a, b []proto.Message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestBadInput sends one bad request per case and checks the status code,
// that the message says what was wrong, and that nothing changed.
func TestBadInput(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	f0, f100 := 0.0, 100.0
	i0, i10 := int64(0), int64(10)
	l2, l5 := int64(2), int64(5)
	h.register("s", "temp", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(20), &pb.Constraints{Min: &f0, Max: &f100})
	h.register("s", "count", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(5), &pb.Constraints{MinInteger: &i0, MaxInteger: &i10})
	h.register("s", "word", pb.VariableType_VARIABLE_TYPE_STRING, strV("abc"), &pb.Constraints{MinLength: &l2, MaxLength: &l5, Pattern: "[a-z]+"})
	h.register("s", "mode", pb.VariableType_VARIABLE_TYPE_CHOICE, choiceV("a"), &pb.Constraints{Choices: []string{"a", "b"}})
	h.register("s", "mod", pb.VariableType_VARIABLE_TYPE_MODULE, moduleV("x"), &pb.Constraints{AllowedModules: []string{"x", "y"}})
	h.register("s", "emb", pb.VariableType_VARIABLE_TYPE_EMBEDDING, embV(1, 2, 3), &pb.Constraints{Dimensions: 3})
	h.register("s", "ten", pb.VariableType_VARIABLE_TYPE_TENSOR, tensorV("uint8", make([]byte, 4), 2, 2), &pb.Constraints{Shape: []int64{2, -1}})

	c := h.client
	set := func(ident string, v *pb.Value) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: ident, Value: v})
			return err
		}
	}
	register := func(name string, typ pb.VariableType, v *pb.Value, cons *pb.Constraints) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: name, Type: typ, InitialValue: v, Constraints: cons})
			return err
		}
	}
	watch := func(req *pb.WatchVariablesRequest) func(context.Context) error {
		return func(context.Context) error { return h.watchErr(req) }
	}
	watchBatched := func(req *pb.WatchVariablesRequest) func(context.Context) error {
		return func(ctx context.Context) error {
			stream, err := c.WatchVariablesBatched(ctx, req)
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}
	}
	one, stale := int64(1), int64(7)
	minus := -1.0

	tests := []struct {
		name string
		call func(context.Context) error
		code codes.Code
		msg  string // a substring the status message must contain
	}{
		// Unknown session.
		{"get session unknown", func(ctx context.Context) error {
			_, err := c.GetSession(ctx, &pb.GetSessionRequest{SessionId: "nope"})
			return err
		}, codes.NotFound, `"nope"`},
		{"cleanup session unknown", func(ctx context.Context) error {
			_, err := c.CleanupSession(ctx, &pb.CleanupSessionRequest{SessionId: "nope"})
			return err
		}, codes.NotFound, `"nope"`},
		{"register in unknown session", func(ctx context.Context) error {
			_, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "nope", Name: "x", Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: floatV(1)})
			return err
		}, codes.NotFound, `"nope"`},
		{"set in unknown session", func(ctx context.Context) error {
			_, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "nope", VariableIdentifier: "temp", Value: floatV(1)})
			return err
		}, codes.NotFound, `"nope"`},
		{"set many in unknown session", func(ctx context.Context) error {
			_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "nope", Updates: []*pb.SetVariableRequest{{VariableIdentifier: "temp", Value: floatV(1)}}})
			return err
		}, codes.NotFound, `"nope"`},
		{"set many, all malformed, in unknown session", func(ctx context.Context) error {
			_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "nope", Updates: []*pb.SetVariableRequest{{VariableIdentifier: "temp"}}})
			return err
		}, codes.NotFound, `"nope"`},
		{"get in unknown session", func(ctx context.Context) error {
			_, err := c.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "nope", VariableIdentifier: "temp"})
			return err
		}, codes.NotFound, `"nope"`},
		{"get many in unknown session", func(ctx context.Context) error {
			_, err := c.GetVariables(ctx, &pb.GetVariablesRequest{SessionId: "nope", VariableIdentifiers: []string{"temp"}})
			return err
		}, codes.NotFound, `"nope"`},
		{"list in unknown session", func(ctx context.Context) error {
			_, err := c.ListVariables(ctx, &pb.ListVariablesRequest{SessionId: "nope"})
			return err
		}, codes.NotFound, `"nope"`},
		{"delete in unknown session", func(ctx context.Context) error {
			_, err := c.DeleteVariable(ctx, &pb.DeleteVariableRequest{SessionId: "nope", VariableIdentifier: "temp"})
			return err
		}, codes.NotFound, `"nope"`},
		{"watch unknown session", watch(&pb.WatchVariablesRequest{SessionId: "nope"}), codes.NotFound, `"nope"`},

		// Unknown variable.
		{"get unknown variable", func(ctx context.Context) error {
			_, err := c.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "nope"})
			return err
		}, codes.NotFound, `"nope"`},
		{"get unknown id", func(ctx context.Context) error {
			_, err := c.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "99"})
			return err
		}, codes.NotFound, `"99"`},
		{"set unknown variable", set("nope", floatV(1)), codes.NotFound, `"nope"`},
		{"delete unknown variable", func(ctx context.Context) error {
			_, err := c.DeleteVariable(ctx, &pb.DeleteVariableRequest{SessionId: "s", VariableIdentifier: "nope"})
			return err
		}, codes.NotFound, `"nope"`},
		{"watch unknown variable", watch(&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"temp", "nope"}}), codes.NotFound, `"nope"`},

		// Duplicate name.
		{"duplicate name", register("temp", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), nil), codes.AlreadyExists, `"temp"`},

		// Wrong or missing value type.
		{"set wrong value type", set("temp", strV("hot")), codes.InvalidArgument, "wrong value type"},
		{"set integer into float", set("temp", intV(1)), codes.InvalidArgument, "wrong value type"},
		{"register wrong initial type", register("x", pb.VariableType_VARIABLE_TYPE_FLOAT, intV(1), nil), codes.InvalidArgument, "wrong value type"},
		{"set value missing", set("temp", nil), codes.InvalidArgument, "value is missing"},
		{"set value without kind", set("temp", &pb.Value{}), codes.InvalidArgument, "no kind set"},
		{"register initial value without kind", register("x", pb.VariableType_VARIABLE_TYPE_FLOAT, &pb.Value{}, nil), codes.InvalidArgument, "initial_value has no kind"},
		{"register type unspecified", register("x", pb.VariableType_VARIABLE_TYPE_UNSPECIFIED, floatV(1), nil), codes.InvalidArgument, "type is not set"},
		{"register unknown type", register("x", pb.VariableType(99), floatV(1), nil), codes.InvalidArgument, "unknown variable type 99"},
		{"tensor data of the wrong size", set("ten", tensorV("uint8", make([]byte, 3), 2, 2)), codes.InvalidArgument, "needs 4 bytes"},
		{"tensor unknown dtype", set("ten", tensorV("complex64", make([]byte, 4), 2, 2)), codes.InvalidArgument, "dtype"},

		// Each constraint kind violated.
		{"min", set("temp", floatV(-0.5)), codes.InvalidArgument, "min"},
		{"max", set("temp", floatV(100.5)), codes.InvalidArgument, "max"},
		{"min_integer", set("count", intV(-1)), codes.InvalidArgument, "min_integer"},
		{"max_integer", set("count", intV(11)), codes.InvalidArgument, "max_integer"},
		{"min_length", set("word", strV("a")), codes.InvalidArgument, "min_length"},
		{"max_length", set("word", strV("abcdef")), codes.InvalidArgument, "max_length"},
		{"pattern", set("word", strV("AB")), codes.InvalidArgument, "pattern"},
		{"choices", set("mode", choiceV("c")), codes.InvalidArgument, "choices"},
		{"allowed_modules", set("mod", moduleV("z")), codes.InvalidArgument, "allowed_modules"},
		{"dimensions", set("emb", embV(1, 2)), codes.InvalidArgument, "dimensions"},
		{"shape", set("ten", tensorV("uint8", make([]byte, 3), 3, 1)), codes.InvalidArgument, "shape"},
		{"initial value violates max", register("x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(2), &pb.Constraints{Max: proto.Float64(1)}), codes.InvalidArgument, "max"},

		// Constraints that do not fit the type, or are malformed.
		{"choices on float", register("x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), &pb.Constraints{Choices: []string{"a"}}), codes.InvalidArgument, "choices does not apply to float"},
		{"float min on integer", register("x", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(1), &pb.Constraints{Min: &minus}), codes.InvalidArgument, "min does not apply to integer"},
		{"dimensions on string", register("x", pb.VariableType_VARIABLE_TYPE_STRING, strV("a"), &pb.Constraints{Dimensions: 3}), codes.InvalidArgument, "dimensions does not apply"},
		{"pattern on choice", register("x", pb.VariableType_VARIABLE_TYPE_CHOICE, choiceV("a"), &pb.Constraints{Choices: []string{"a"}, Pattern: "a"}), codes.InvalidArgument, "pattern does not apply"},
		{"choice without choices", register("x", pb.VariableType_VARIABLE_TYPE_CHOICE, choiceV("a"), nil), codes.InvalidArgument, "choices"},
		{"bad regexp", register("x", pb.VariableType_VARIABLE_TYPE_STRING, strV("a"), &pb.Constraints{Pattern: "(a"}), codes.InvalidArgument, "pattern"},
		{"min above max", register("x", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(5), &pb.Constraints{MinInteger: &i10, MaxInteger: &i0}), codes.InvalidArgument, "min_integer"},

		// Bad globs.
		{"list bad glob", func(ctx context.Context) error {
			_, err := c.ListVariables(ctx, &pb.ListVariablesRequest{SessionId: "s", Pattern: "[ab"})
			return err
		}, codes.InvalidArgument, "glob"},
		{"list stray bracket", func(ctx context.Context) error {
			_, err := c.ListVariables(ctx, &pb.ListVariablesRequest{SessionId: "s", Pattern: "a]"})
			return err
		}, codes.InvalidArgument, "glob"},
		{"watch bad glob", watch(&pb.WatchVariablesRequest{SessionId: "s", Pattern: "t\\"}), codes.InvalidArgument, "glob"},

		// Optimistic locking.
		{"stale expected_version", func(ctx context.Context) error {
			_, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "temp", Value: floatV(1), ExpectedVersion: &stale})
			return err
		}, codes.Aborted, "current version is 1"},
		{"stale expected_version in atomic set", func(ctx context.Context) error {
			_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
				{VariableIdentifier: "count", Value: intV(6), ExpectedVersion: &one},
				{VariableIdentifier: "temp", Value: floatV(1), ExpectedVersion: &stale},
			}})
			return err
		}, codes.Aborted, "current version is 1"},

		// Names.
		{"empty name", register("", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), nil), codes.InvalidArgument, "empty"},
		{"oversized name", register(strings.Repeat("n", 257), pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), nil), codes.InvalidArgument, "257 bytes"},
		{"name starting with a digit", register("1x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), nil), codes.InvalidArgument, "must start"},
		{"name with glob syntax", register("a*", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), nil), codes.InvalidArgument, "allowed"},

		// Atomic multi-set: one bad update fails all of them.
		{"atomic set with a constraint violation", func(ctx context.Context) error {
			_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
				{VariableIdentifier: "count", Value: intV(6)},
				{VariableIdentifier: "temp", Value: floatV(1000)},
			}})
			return err
		}, codes.InvalidArgument, "max"},
		{"atomic set with a malformed update", func(ctx context.Context) error {
			_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
				{VariableIdentifier: "count", Value: intV(6)},
				{VariableIdentifier: "temp"},
			}})
			return err
		}, codes.InvalidArgument, "updates[1]"},
		{"atomic set naming another session", func(ctx context.Context) error {
			_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
				{SessionId: "other", VariableIdentifier: "count", Value: intV(6)},
			}})
			return err
		}, codes.InvalidArgument, "differs"},
		{"set many without updates", func(ctx context.Context) error {
			_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "s"})
			return err
		}, codes.InvalidArgument, "updates is empty"},

		// Empty or malformed identifiers and sessions.
		{"get session empty id", func(ctx context.Context) error {
			_, err := c.GetSession(ctx, &pb.GetSessionRequest{})
			return err
		}, codes.InvalidArgument, "session id is empty"},
		{"heartbeat empty id", func(ctx context.Context) error {
			_, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{})
			return err
		}, codes.InvalidArgument, "session id is empty"},
		{"get empty identifier", func(ctx context.Context) error {
			_, err := c.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "s"})
			return err
		}, codes.InvalidArgument, "variable_identifier is empty"},
		{"delete empty identifier", func(ctx context.Context) error {
			_, err := c.DeleteVariable(ctx, &pb.DeleteVariableRequest{SessionId: "s"})
			return err
		}, codes.InvalidArgument, "variable_identifier is empty"},
		{"session id with a space", func(ctx context.Context) error {
			_, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "a b"})
			return err
		}, codes.InvalidArgument, "session id"},
		{"negative ttl", func(ctx context.Context) error {
			_, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "t", Ttl: durationpb.New(-time.Second)})
			return err
		}, codes.InvalidArgument, "ttl"},
		{"malformed ttl", func(ctx context.Context) error {
			_, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "t", Ttl: &durationpb.Duration{Seconds: 1, Nanos: -5}})
			return err
		}, codes.InvalidArgument, "ttl"},

		// Watch requests.
		{"watch empty session", watch(&pb.WatchVariablesRequest{}), codes.InvalidArgument, "session_id is empty"},
		{"watch empty identifier", watch(&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{""}}), codes.InvalidArgument, "variable_identifiers[0]"},
		{"watch negative heartbeat", watch(&pb.WatchVariablesRequest{SessionId: "s", HeartbeatInterval: durationpb.New(-time.Second)}), codes.InvalidArgument, "heartbeat_interval"},
		{"watch negative start_revision", watch(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(-1)}), codes.InvalidArgument, "start_revision"},
		{"watch start_revision with initial values", watch(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(0), IncludeInitialValues: true}), codes.InvalidArgument, "exclusive"},
		{"watch start_revision ahead", watch(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(1 << 40)}), codes.InvalidArgument, "ahead"},
		{"watch max_batch_size unbatched", watch(&pb.WatchVariablesRequest{SessionId: "s", MaxBatchSize: 5}), codes.InvalidArgument, "WatchVariablesBatched only"},
		{"watch filters without plugins", watch(&pb.WatchVariablesRequest{SessionId: "s", Filters: []*pb.FilterSpec{{Name: "deadband"}}}), codes.FailedPrecondition, "no filters are loaded"},
		{"batched negative max_batch_size", watchBatched(&pb.WatchVariablesRequest{SessionId: "s", MaxBatchSize: -1}), codes.InvalidArgument, "max_batch_size"},
		{"batched max_batch_delay over the limit", watchBatched(&pb.WatchVariablesRequest{SessionId: "s", MaxBatchDelay: durationpb.New(time.Hour)}), codes.InvalidArgument, "max_batch_delay"},
		{"batched unknown session", watchBatched(&pb.WatchVariablesRequest{SessionId: "nope"}), codes.NotFound, `"nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshot()
			err := tc.call(h.ctx())
			wantCode(t, err, tc.code)
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q does not contain %q", msg, tc.msg)
			}
			if after := h.snapshot(); !sameState(before, after) {
				t.Errorf("state changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}
