package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

const (
	adminToken = "admin-token-0123456789"
	acmeToken  = "acme-token-0123456789ab"
	betaToken  = "beta-token-0123456789ab"
	testTokens = adminToken + "\n" + acmeToken + " tenant=acme\n" + betaToken + " tenant=beta\n"
)

// TestUnaryRoundTrip: each unary RPC answers its response message as JSON
// with the proto field names, and reads its request the same way.
func TestUnaryRoundTrip(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	out := h.mustPost("InitializeSession", "", `{"session_id":"s1","metadata":{"owner":"ml"}}`)
	if out["created"] != true || out["session"].(map[string]any)["id"] != "s1" {
		t.Fatalf("InitializeSession: %v", out)
	}
	h.mustPost("RegisterVariable", "", `{"session_id":"s1","name":"lr","type":"VARIABLE_TYPE_FLOAT","initial_value":{"float_value":0.1},"constraints":{"min":0,"max":1}}`)
	out = h.mustPost("SetVariable", "", `{"session_id":"s1","variable_identifier":"lr","value":{"float_value":0.5},"source":"curl"}`)
	v := out["variable"].(map[string]any)
	if v["value"].(map[string]any)["float_value"] != 0.5 || v["last_update_source"] != "curl" || out["revision"] != "2" {
		t.Fatalf("SetVariable: %v", out)
	}
	// Read back over gRPC: the same engine.
	got, err := h.client.GetVariable(h.ctx(), &pb.GetVariableRequest{SessionId: "s1", VariableIdentifier: "lr"})
	if err != nil || got.GetVariable().GetValue().GetFloatValue() != 0.5 {
		t.Fatalf("GetVariable over gRPC: %v %v", got, err)
	}
	out = h.mustPost("ListSessions", "", "")
	if ss := out["sessions"].([]any); len(ss) != 1 {
		t.Fatalf("ListSessions: %v", out)
	}
	// lowerCamel names are accepted too, as protojson reads them.
	h.mustPost("GetVariable", "", `{"sessionId":"s1","variableIdentifier":"lr"}`)
	out = h.mustPost("SetVariables", "", `{"session_id":"s1","atomic":true,"updates":[{"variable_identifier":"lr","value":{"float_value":0.25}}]}`)
	if out["revision"] != "3" {
		t.Fatalf("SetVariables: %v", out)
	}
}

// TestUnaryErrors: errors carry the gRPC code as the HTTP status and the
// gRPC status, ErrorInfo included, as the body; and they leave state as it
// was.
func TestUnaryErrors(t *testing.T) {
	h := newHarness(t, harnessOptions{engine: enginecfgWithMaxSessions(1)})
	h.mustPost("InitializeSession", "", `{"session_id":"s1"}`)
	h.mustPost("RegisterVariable", "", `{"session_id":"s1","name":"lr","type":"VARIABLE_TYPE_FLOAT","initial_value":{"float_value":0.1},"constraints":{"min":0,"max":1}}`)
	h.mustPost("SetVariable", "", `{"session_id":"s1","variable_identifier":"lr","value":{"float_value":0.2}}`)
	cases := []struct {
		name, method, body string
		http               int
		code               codes.Code
		reason             string
	}{
		{"constraint violated", "SetVariable", `{"session_id":"s1","variable_identifier":"lr","value":{"float_value":7}}`, 400, codes.InvalidArgument, "CONSTRAINT_VIOLATED"},
		{"wrong type", "SetVariable", `{"session_id":"s1","variable_identifier":"lr","value":{"string_value":"x"}}`, 400, codes.InvalidArgument, ""},
		{"version conflict", "SetVariable", `{"session_id":"s1","variable_identifier":"lr","value":{"float_value":0.3},"expected_version":1}`, 409, codes.Aborted, ""},
		{"unknown session", "GetSession", `{"session_id":"nope"}`, 404, codes.NotFound, ""},
		{"unknown variable", "GetVariable", `{"session_id":"s1","variable_identifier":"nope"}`, 404, codes.NotFound, ""},
		{"limit", "InitializeSession", `{"session_id":"s2"}`, 429, codes.ResourceExhausted, "LIMIT_EXCEEDED"},
		{"unknown field", "SetVariable", `{"session_id":"s1","variable_identifier":"lr","expected_vershun":1}`, 400, codes.InvalidArgument, ""},
		{"not JSON", "SetVariable", `{`, 400, codes.InvalidArgument, ""},
		{"unknown method", "Frobnicate", `{}`, 501, codes.Unimplemented, ""},
		{"streaming method", "WatchVariables", `{}`, 501, codes.Unimplemented, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, st := h.post(tc.method, "", tc.body)
			if code != tc.http || codes.Code(st["code"].(float64)) != tc.code || st["message"] == "" {
				t.Fatalf("got %d %v, want %d %v", code, st, tc.http, tc.code)
			}
			if tc.reason != "" && reason(st) != tc.reason {
				t.Fatalf("reason %q, want %q: %v", reason(st), tc.reason, st)
			}
		})
	}
	got, err := h.client.GetVariable(h.ctx(), &pb.GetVariableRequest{SessionId: "s1", VariableIdentifier: "lr"})
	if err != nil || got.GetVariable().GetValue().GetFloatValue() != 0.2 || got.GetVariable().GetVersion() != 2 {
		t.Fatalf("state changed: %v %v", got, err)
	}
}

// TestUnaryMatchesGRPC: the same bad request answers the same code and
// message over HTTP as over gRPC, because it is the same code path.
func TestUnaryMatchesGRPC(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.mustPost("InitializeSession", "", `{"session_id":"s1"}`)
	h.mustPost("RegisterVariable", "", `{"session_id":"s1","name":"n","type":"VARIABLE_TYPE_INTEGER","initial_value":{"integer_value":"1"},"constraints":{"min_integer":"0","max_integer":"10"}}`)
	_, gerr := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s1", VariableIdentifier: "n", Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: 11}}})
	code, st := h.post("SetVariable", "", `{"session_id":"s1","variable_identifier":"n","value":{"integer_value":"11"}}`)
	gs := status.Convert(gerr)
	if code != HTTPStatus(gs.Code()) || codes.Code(st["code"].(float64)) != gs.Code() || st["message"] != gs.Message() {
		t.Fatalf("HTTP %d %v; gRPC %v", code, st, gs)
	}
}

// TestUnaryTokens: with a token file, a call needs "Authorization: Bearer",
// and a tenant's token sees and touches only its tenant's sessions.
func TestUnaryTokens(t *testing.T) {
	h := newHarness(t, harnessOptions{tokens: testTokens})
	for _, tc := range []struct{ name, header string }{{"none", ""}, {"wrong", "wrong-token-0123456789"}} {
		t.Run(tc.name, func(t *testing.T) {
			code, st := h.post("ListSessions", tc.header, "")
			if code != http.StatusUnauthorized || codes.Code(st["code"].(float64)) != codes.Unauthenticated {
				t.Fatalf("%d %v", code, st)
			}
		})
	}
	h.mustPost("InitializeSession", acmeToken, `{"session_id":"acme-1"}`)
	h.mustPost("InitializeSession", betaToken, `{"session_id":"beta-1"}`)
	ids := func(token string) string {
		out := h.mustPost("ListSessions", token, "")
		var s []string
		for _, x := range out["sessions"].([]any) {
			s = append(s, x.(map[string]any)["id"].(string))
		}
		return strings.Join(s, ",")
	}
	if got := ids(acmeToken); got != "acme-1" {
		t.Fatalf("acme sees %s", got)
	}
	if got := ids(adminToken); got != "acme-1,beta-1" {
		t.Fatalf("admin sees %s", got)
	}
	code, st := h.post("GetSession", acmeToken, `{"session_id":"beta-1"}`)
	if code != http.StatusForbidden || codes.Code(st["code"].(float64)) != codes.PermissionDenied {
		t.Fatalf("acme reading beta's session: %d %v", code, st)
	}
	// Health needs no token; the server counters need an admin's.
	resp, err := http.Get(h.url + "/v1/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {acmeToken, 403}, {adminToken, 200}} {
		req, _ := http.NewRequest(http.MethodGet, h.url+"/v1/server", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("/v1/server with %q: %d, want %d", tc.token, resp.StatusCode, tc.want)
		}
	}
}

// TestUnaryBodyLimit: a body over MaxRequestBytes is RESOURCE_EXHAUSTED,
// as gRPC answers a message over its receive limit.
func TestUnaryBodyLimit(t *testing.T) {
	h := newHarness(t, harnessOptions{config: func(c *Config) { c.MaxRequestBytes = 64 }})
	code, st := h.post("Ping", "", `{"message":"`+strings.Repeat("x", 100)+`"}`)
	if code != http.StatusTooManyRequests || codes.Code(st["code"].(float64)) != codes.ResourceExhausted {
		t.Fatalf("%d %v", code, st)
	}
}
