package grpcapi

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

func TestPing(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp, err := h.client.Ping(h.ctx(), &pb.PingRequest{Message: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetMessage() != "hello" || resp.GetServerTime() == nil {
		t.Fatalf("Ping = %v", resp)
	}
}

func TestSessions(t *testing.T) {
	h := newHarness(t, harnessOptions{})

	created, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{
		SessionId: "alpha", Metadata: map[string]string{"owner": "me"}, Ttl: durationpb.New(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := created.GetSession()
	if !created.GetCreated() || s.GetId() != "alpha" || s.GetMetadata()["owner"] != "me" ||
		s.GetTtl().AsDuration() != time.Minute || s.GetCreatedAt() == nil || s.GetExpiresAt() == nil {
		t.Fatalf("InitializeSession = %v", created)
	}

	again, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: "alpha", Metadata: map[string]string{"owner": "other"}})
	if err != nil {
		t.Fatal(err)
	}
	if again.GetCreated() || again.GetSession().GetMetadata()["owner"] != "me" {
		t.Fatalf("second InitializeSession = %v, want the existing session", again)
	}

	gen, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !gen.GetCreated() || gen.GetSession().GetId() == "" || gen.GetSession().GetTtl().AsDuration() != time.Hour {
		t.Fatalf("generated session = %v", gen)
	}

	h.register("alpha", "x", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(1), nil)
	got, err := h.client.GetSession(h.ctx(), &pb.GetSessionRequest{SessionId: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSession().GetVariableCount() != 1 || got.GetSession().GetRevision() != 1 {
		t.Fatalf("GetSession = %v", got)
	}

	list, err := h.client.ListSessions(h.ctx(), &pb.ListSessionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, s := range list.GetSessions() {
		ids = append(ids, s.GetId())
	}
	if len(ids) != 2 || ids[0] != "alpha" || ids[1] != gen.GetSession().GetId() {
		t.Fatalf("ListSessions ids = %v", ids)
	}

	hb, err := h.client.Heartbeat(h.ctx(), &pb.HeartbeatRequest{SessionId: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if !hb.GetSessionValid() || hb.GetServerTime() == nil || hb.GetExpiresAt() == nil {
		t.Fatalf("Heartbeat = %v", hb)
	}

	cleaned, err := h.client.CleanupSession(h.ctx(), &pb.CleanupSessionRequest{SessionId: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if cleaned.GetVariablesDeleted() != 1 {
		t.Fatalf("CleanupSession = %v", cleaned)
	}
	_, err = h.client.GetSession(h.ctx(), &pb.GetSessionRequest{SessionId: "alpha"})
	wantCode(t, err, codes.NotFound)

	hb, err = h.client.Heartbeat(h.ctx(), &pb.HeartbeatRequest{SessionId: "alpha"})
	if err != nil {
		t.Fatalf("Heartbeat of a gone session: %v, want OK with session_valid=false", err)
	}
	if hb.GetSessionValid() || hb.GetServerTime() == nil {
		t.Fatalf("Heartbeat of a gone session = %v", hb)
	}
}

// TestRegisterEveryType registers one variable of each type, with a
// constraint where the type has one, and reads it back by id and by name.
func TestRegisterEveryType(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	f, i := 1.5, int64(3)
	tests := []struct {
		name string
		typ  pb.VariableType
		v    *pb.Value
		c    *pb.Constraints
	}{
		{"f", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1.5), &pb.Constraints{Min: &f}},
		{"i", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(3), &pb.Constraints{MaxInteger: &i}},
		{"s", pb.VariableType_VARIABLE_TYPE_STRING, strV("héllo"), &pb.Constraints{Pattern: "h.*"}},
		{"b", pb.VariableType_VARIABLE_TYPE_BOOLEAN, boolV(true), nil},
		{"c", pb.VariableType_VARIABLE_TYPE_CHOICE, choiceV("b"), &pb.Constraints{Choices: []string{"a", "b"}}},
		{"m", pb.VariableType_VARIABLE_TYPE_MODULE, moduleV("mod.x"), &pb.Constraints{AllowedModules: []string{"mod.x"}}},
		{"e", pb.VariableType_VARIABLE_TYPE_EMBEDDING, embV(0.25, 0.5), &pb.Constraints{Dimensions: 2}},
		{"t", pb.VariableType_VARIABLE_TYPE_TENSOR, tensorV("uint8", []byte{1, 2, 3, 4, 5, 6}, 2, 3), &pb.Constraints{Shape: []int64{2, -1}}},
	}
	for n, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := h.client.RegisterVariable(h.ctx(), &pb.RegisterVariableRequest{
				SessionId: "s", Name: tc.name, Type: tc.typ, InitialValue: tc.v, Constraints: tc.c,
				Metadata: map[string]string{"unit": "x"},
			})
			if err != nil {
				t.Fatal(err)
			}
			v := resp.GetVariable()
			if v.GetName() != tc.name || v.GetType() != tc.typ || !proto.Equal(v.GetValue(), tc.v) ||
				!proto.Equal(v.GetConstraints(), tc.c) || v.GetVersion() != 1 ||
				v.GetCreateRevision() != int64(n+1) || v.GetModRevision() != int64(n+1) ||
				resp.GetRevision() != int64(n+1) || v.GetMetadata()["unit"] != "x" {
				t.Fatalf("RegisterVariable = %v", resp)
			}
			for _, ident := range []string{v.GetId(), tc.name} {
				got, err := h.client.GetVariable(h.ctx(), &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: ident})
				if err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(got.GetVariable(), v) {
					t.Fatalf("GetVariable(%q) = %v, want %v", ident, got.GetVariable(), v)
				}
			}
		})
	}
}

func TestVariables(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	temp := h.register("s", "temp", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(20), nil)
	h.register("s", "tag", pb.VariableType_VARIABLE_TYPE_STRING, strV("a"), nil)
	h.register("s", "target", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)

	t.Run("set", func(t *testing.T) {
		v := int64(1)
		resp, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{
			SessionId: "s", VariableIdentifier: temp.GetId(), Value: floatV(21.5),
			Metadata: map[string]string{"why": "warm"}, Source: "thermostat", ExpectedVersion: &v,
		})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetVariable()
		if resp.GetRevision() != 4 || got.GetVersion() != 2 || got.GetModRevision() != 4 ||
			got.GetValue().GetFloatValue() != 21.5 || got.GetLastUpdateSource() != "thermostat" ||
			got.GetMetadata()["why"] != "warm" {
			t.Fatalf("SetVariable = %v", resp)
		}
	})

	t.Run("get many", func(t *testing.T) {
		resp, err := h.client.GetVariables(h.ctx(), &pb.GetVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"tag", "nope", "temp", "9"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetVariables()) != 2 || resp.GetVariables()[0].GetName() != "tag" || resp.GetVariables()[1].GetName() != "temp" ||
			strings.Join(resp.GetMissing(), ",") != "nope,9" || resp.GetRevision() != 4 {
			t.Fatalf("GetVariables = %v", resp)
		}
	})

	t.Run("list", func(t *testing.T) {
		for _, tc := range []struct{ pattern, want string }{
			{"", "tag,target,temp"},
			{"t*", "tag,target,temp"},
			{"ta?", "tag"},
			{"te*", "temp"},
			{"x*", ""},
		} {
			resp, err := h.client.ListVariables(h.ctx(), &pb.ListVariablesRequest{SessionId: "s", Pattern: tc.pattern})
			if err != nil {
				t.Fatal(err)
			}
			names := []string{}
			for _, v := range resp.GetVariables() {
				names = append(names, v.GetName())
			}
			if strings.Join(names, ",") != tc.want || resp.GetRevision() != 4 {
				t.Errorf("ListVariables(%q) = %v at %d, want %s", tc.pattern, names, resp.GetRevision(), tc.want)
			}
		}
	})

	t.Run("set many atomic", func(t *testing.T) {
		resp, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
			{VariableIdentifier: "temp", Value: floatV(22)},
			{SessionId: "s", VariableIdentifier: "target", Value: floatV(23)},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetRevision() != 5 || len(resp.GetResults()) != 2 {
			t.Fatalf("SetVariables = %v", resp)
		}
		for _, r := range resp.GetResults() {
			if !r.GetSuccess() || r.GetRevision() != 5 || r.GetVariable().GetModRevision() != 5 {
				t.Fatalf("result %v", r)
			}
		}
	})

	t.Run("set many per item", func(t *testing.T) {
		resp, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Updates: []*pb.SetVariableRequest{
			{VariableIdentifier: "temp", Value: floatV(24)},
			{VariableIdentifier: "nope", Value: floatV(1)},
			{VariableIdentifier: "tag", Value: floatV(1)},
			{VariableIdentifier: "tag", Value: &pb.Value{}},
			{VariableIdentifier: "tag", Value: strV("b")},
		}})
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			ok   bool
			code codes.Code
			rev  int64
		}{{true, codes.OK, 6}, {false, codes.NotFound, 0}, {false, codes.InvalidArgument, 0}, {false, codes.InvalidArgument, 0}, {true, codes.OK, 7}}
		if len(resp.GetResults()) != len(want) || resp.GetRevision() != 7 {
			t.Fatalf("SetVariables = %v", resp)
		}
		for i, r := range resp.GetResults() {
			if r.GetSuccess() != want[i].ok || codes.Code(r.GetErrorCode()) != want[i].code || r.GetRevision() != want[i].rev ||
				(r.GetSuccess() != (r.GetError() == "")) || r.GetVariableIdentifier() != []string{"temp", "nope", "tag", "tag", "tag"}[i] {
				t.Errorf("result %d = %v", i, r)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		resp, err := h.client.DeleteVariable(h.ctx(), &pb.DeleteVariableRequest{SessionId: "s", VariableIdentifier: "tag"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetRevision() != 8 {
			t.Fatalf("DeleteVariable = %v", resp)
		}
		_, err = h.client.GetVariable(h.ctx(), &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "tag"})
		wantCode(t, err, codes.NotFound)
	})
}

func TestHealthAndReflectionRegistered(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	info := h.gs.GetServiceInfo()
	for _, name := range []string{"varwatch.v1.UnifiedBridge", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if _, ok := info[name]; !ok {
			t.Errorf("service %s not registered (have %v)", name, info)
		}
	}
	conn := h.conn()
	for _, service := range []string{"", "varwatch.v1.UnifiedBridge"} {
		resp, err := healthpb.NewHealthClient(conn).Check(h.ctx(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q = %v", service, resp.GetStatus())
		}
	}
}
