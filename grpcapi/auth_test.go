package grpcapi

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

const (
	adminToken  = "admin-token-0123456789"
	acmeToken   = "acme-token-0123456789"
	acmeToken2  = "acme-token-rotated-0123"
	globexToken = "globex-token-0123456789"
)

func testTokens(t *testing.T, file string) *Tokens {
	t.Helper()
	tokens, err := ParseTokens(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

// authServer is the engine behind a gRPC server with authentication, and
// an unauthenticated connection to it: calls add their token with as.
type authServer struct {
	eng    *engine.Engine
	auth   *Auth
	cc     *grpc.ClientConn
	client pb.UnifiedBridgeClient
}

func newAuthServer(t *testing.T, tokens *Tokens) *authServer {
	t.Helper()
	eng := engine.New(engine.Config{})
	t.Cleanup(func() { _ = eng.Close() })
	auth := NewAuth(tokens, nil)
	_, cc := serveLoopback(t, New(Config{Backend: eng}), auth.ServerOptions()...)
	return &authServer{eng: eng, auth: auth, cc: cc, client: pb.NewUnifiedBridgeClient(cc)}
}

// as is a context for one call with the metadata "authorization: auth"
// (none when auth is empty).
func as(t *testing.T, auth string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	if auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
	}
	return ctx
}

func bearer(tok string) string { return "Bearer " + tok }

// rpcCall is one RPC of the service, naming session "a" and its variable
// "x" where it names any.
type rpcCall struct {
	method string
	call   func(ctx context.Context, c pb.UnifiedBridgeClient) error
}

// recvFirst opens a stream and returns the error of its first message.
func recvFirst[T any](stream grpc.ServerStreamingClient[T], err error) error {
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

// everyRPC calls every RPC of UnifiedBridge on session "a", variable "x".
func everyRPC() []rpcCall {
	set := &pb.SetVariableRequest{SessionId: "a", VariableIdentifier: "x", Value: floatV(99)}
	return []rpcCall{
		{"Ping", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.Ping(ctx, &pb.PingRequest{})
			return err
		}},
		{"InitializeSession", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "a"})
			return err
		}},
		{"GetSession", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.GetSession(ctx, &pb.GetSessionRequest{SessionId: "a"})
			return err
		}},
		{"ListSessions", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			resp, err := c.ListSessions(ctx, &pb.ListSessionsRequest{})
			if err != nil {
				return err
			}
			for _, s := range resp.GetSessions() {
				if s.GetId() == "a" {
					return status.Error(codes.PermissionDenied, "(test) ListSessions showed session a")
				}
			}
			return nil
		}},
		{"CleanupSession", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.CleanupSession(ctx, &pb.CleanupSessionRequest{SessionId: "a"})
			return err
		}},
		{"Heartbeat", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{SessionId: "a"})
			return err
		}},
		{"RegisterVariable", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "a", Name: "y",
				Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: floatV(1)})
			return err
		}},
		{"GetVariable", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "a", VariableIdentifier: "x"})
			return err
		}},
		{"GetVariables", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.GetVariables(ctx, &pb.GetVariablesRequest{SessionId: "a", VariableIdentifiers: []string{"x"}})
			return err
		}},
		{"SetVariable", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.SetVariable(ctx, set)
			return err
		}},
		{"SetVariables", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "a", Atomic: true, Updates: []*pb.SetVariableRequest{set}})
			return err
		}},
		{"SetVariables (none well-formed)", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "a", Updates: []*pb.SetVariableRequest{{}}})
			return err
		}},
		{"ListVariables", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.ListVariables(ctx, &pb.ListVariablesRequest{SessionId: "a"})
			return err
		}},
		{"DeleteVariable", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.DeleteVariable(ctx, &pb.DeleteVariableRequest{SessionId: "a", VariableIdentifier: "x"})
			return err
		}},
		{"WatchVariables", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			return recvFirst(c.WatchVariables(ctx, &pb.WatchVariablesRequest{SessionId: "a", IncludeInitialValues: true}))
		}},
		{"WatchVariablesBatched", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			return recvFirst(c.WatchVariablesBatched(ctx, &pb.WatchVariablesRequest{SessionId: "a", IncludeInitialValues: true}))
		}},
		{"Watch", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			// A refused watch ends with its status as data: the same code.
			stream, err := c.Watch(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&pb.WatchRequest{Request: &pb.WatchRequest_Create{Create: &pb.WatchCreate{WatchId: 1,
				Request: &pb.WatchVariablesRequest{SessionId: "a", IncludeInitialValues: true}}}}); err != nil && err != io.EOF {
				return err // io.EOF: the server ended the stream, Recv says how
			}
			resp, err := stream.Recv()
			if err != nil {
				return err
			}
			if e := resp.GetEvents()[0].GetEnded(); e != nil {
				return status.Error(codes.Code(e.GetCode()), e.GetMessage())
			}
			return nil
		}},
		{"WriteVariables", func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			stream, err := c.WriteVariables(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&pb.WriteVariablesRequest{SessionId: "a", Updates: []*pb.SetVariableRequest{set}}); err != nil && err != io.EOF {
				return err
			}
			resp, err := stream.Recv()
			if err != nil {
				return err
			}
			if r := resp.GetResults()[0]; !r.GetSuccess() {
				return status.Error(codes.Code(r.GetErrorCode()), r.GetError())
			}
			return nil
		}},
	}
}

// TestEveryRPCIsCovered keeps everyRPC in step with the service.
func TestEveryRPCIsCovered(t *testing.T) {
	var want, got []string
	for _, m := range pb.UnifiedBridge_ServiceDesc.Methods {
		want = append(want, m.MethodName)
	}
	for _, s := range pb.UnifiedBridge_ServiceDesc.Streams {
		want = append(want, s.StreamName)
	}
	for _, c := range everyRPC() {
		if name, _, _ := strings.Cut(c.method, " "); !slices.Contains(got, name) {
			got = append(got, name)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("everyRPC covers %v, the service has %v", got, want)
	}
}

// sessionState is everything about session "a" a refused call must leave
// as it was, read without using the session (ListSessions does not
// refresh TTLs; any write would move the revision).
func sessionState(t *testing.T, eng *engine.Engine) string {
	t.Helper()
	infos, err := eng.ListSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, in := range infos {
		if in.ID != "a" {
			continue
		}
		fmt.Fprintf(&b, "%s owner=%s used=%s expires=%s rev=%d vars=%d", in.ID, in.Owner, in.LastUsedAt, in.ExpiresAt, in.Revision, in.VariableCount)
	}
	return b.String()
}

func TestAuthRefusesEveryRPC(t *testing.T) {
	s := newAuthServer(t, testTokens(t, "# test tokens\n\n"+adminToken+"\n"+acmeToken+" tenant=acme\n"+globexToken+" tenant=globex\n"))
	if _, err := s.client.InitializeSession(as(t, bearer(acmeToken)), &pb.InitializeSessionRequest{SessionId: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.RegisterVariable(as(t, bearer(acmeToken)), &pb.RegisterVariableRequest{SessionId: "a", Name: "x",
		Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: floatV(1)}); err != nil {
		t.Fatal(err)
	}
	before := sessionState(t, s.eng)
	if !strings.Contains(before, "owner=acme") || !strings.HasSuffix(before, "rev=1 vars=1") {
		t.Fatalf("session a: %s", before)
	}

	for _, who := range []struct {
		name string
		auth string
		want codes.Code
	}{
		{"no token", "", codes.Unauthenticated},
		{"wrong token", bearer("not-a-token-0123456789"), codes.Unauthenticated},
		{"wrong token, a prefix of a good one", bearer(acmeToken[:len(acmeToken)-1]), codes.Unauthenticated},
		{"not bearer", "Basic " + acmeToken, codes.Unauthenticated},
		{"other tenant", bearer(globexToken), codes.PermissionDenied},
	} {
		for _, rpc := range everyRPC() {
			t.Run(who.name+"/"+rpc.method, func(t *testing.T) {
				want := who.want
				if who.want == codes.PermissionDenied && (rpc.method == "Ping" || rpc.method == "ListSessions") {
					want = codes.OK // they name no session (ListSessions checks it shows no "a")
				}
				err := rpc.call(as(t, who.auth), s.client)
				if status.Code(err) != want {
					t.Fatalf("%s: %v, want %s", rpc.method, err, want)
				}
			})
		}
	}
	if after := sessionState(t, s.eng); after != before {
		t.Fatalf("refused calls changed session a:\nbefore %s\nafter  %s", before, after)
	}

	t.Run("the owner and an admin may", func(t *testing.T) {
		for _, tok := range []string{acmeToken, adminToken} {
			if _, err := s.client.GetVariable(as(t, bearer(tok)), &pb.GetVariableRequest{SessionId: "a", VariableIdentifier: "x"}); err != nil {
				t.Fatalf("GetVariable with %s: %v", tok, err)
			}
			resp, err := s.client.ListSessions(as(t, "bearer "+tok), &pb.ListSessionsRequest{})
			if err != nil || len(resp.GetSessions()) != 1 {
				t.Fatalf("ListSessions with %s: %v, %v", tok, resp, err)
			}
		}
		stream, err := s.client.WatchVariables(as(t, bearer(acmeToken)), &pb.WatchVariablesRequest{SessionId: "a", IncludeInitialValues: true})
		if err != nil {
			t.Fatal(err)
		}
		if up, err := stream.Recv(); err != nil || up.GetVariable().GetName() != "x" {
			t.Fatalf("watch as owner: %v, %v", up, err)
		}
	})
	t.Run("a tenant's sessions are its own", func(t *testing.T) {
		resp, err := s.client.InitializeSession(as(t, bearer(globexToken)), &pb.InitializeSessionRequest{})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetSession().GetId()
		list, err := s.client.ListSessions(as(t, bearer(globexToken)), &pb.ListSessionsRequest{})
		if err != nil || len(list.GetSessions()) != 1 || list.GetSessions()[0].GetId() != id {
			t.Fatalf("globex ListSessions: %v, %v; want only %s", list, err, id)
		}
		if _, err := s.client.GetSession(as(t, bearer(acmeToken)), &pb.GetSessionRequest{SessionId: id}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("acme GetSession of globex's session: %v", err)
		}
	})
}

func TestAuthHealthStaysOpen(t *testing.T) {
	s := newAuthServer(t, testTokens(t, adminToken))
	resp, err := healthpb.NewHealthClient(s.cc).Check(as(t, ""), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check without a token: %v, %v", resp, err)
	}

	for _, tc := range []struct {
		name string
		auth string
		want codes.Code
	}{
		// Open, so that grpcurl can resolve any call, a health check
		// included, on a server with tokens.
		{"reflection without a token", "", codes.OK},
		{"reflection with a token", bearer(adminToken), codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := reflectionpb.NewServerReflectionClient(s.cc).ServerReflectionInfo(as(t, tc.auth))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&reflectionpb.ServerReflectionRequest{
				MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && err != io.EOF {
				t.Fatal(err) // io.EOF: the server ended the stream, Recv says how
			}
			_, err = stream.Recv()
			if status.Code(err) != tc.want {
				t.Fatalf("reflection: %v, want %s", err, tc.want)
			}
		})
	}
}

func TestAuthSetTokens(t *testing.T) {
	s := newAuthServer(t, testTokens(t, acmeToken+" tenant=acme\n"))
	ping := func(tok string) codes.Code {
		_, err := s.client.Ping(as(t, bearer(tok)), &pb.PingRequest{})
		return status.Code(err)
	}
	if got := ping(acmeToken); got != codes.OK {
		t.Fatalf("before: %s", got)
	}
	s.auth.SetTokens(testTokens(t, acmeToken2+" tenant=acme\n"))
	for _, tc := range []struct {
		tok  string
		want codes.Code
	}{{acmeToken, codes.Unauthenticated}, {acmeToken2, codes.OK}} {
		if got := ping(tc.tok); got != tc.want {
			t.Errorf("after the swap, %s: %s, want %s", tc.tok, got, tc.want)
		}
	}
}

func TestParseTokens(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string
		want    map[string]string // token -> tenant ("" admin)
		wantErr string
	}{
		{name: "admin and tenants, comments, blanks",
			file: "# ops\n\n  " + adminToken + "  \n" + acmeToken + " tenant=acme\n\t" + acmeToken2 + "\ttenant=acme\n# end",
			want: map[string]string{adminToken: "", acmeToken: "acme", acmeToken2: "acme"}},
		{name: "empty", file: "# nothing\n\n", wantErr: "no tokens"},
		{name: "short", file: "short", wantErr: "line 1: token is shorter"},
		{name: "unknown option", file: adminToken + " role=admin", wantErr: "line 1: unknown option"},
		{name: "empty tenant", file: adminToken + " tenant=", wantErr: "bad tenant"},
		{name: "bad tenant", file: adminToken + " tenant=a/b", wantErr: "bad tenant"},
		{name: "two tenants", file: adminToken + " tenant=a tenant=b", wantErr: "more than one tenant"},
		{name: "duplicate", file: adminToken + "\n" + adminToken + " tenant=a", wantErr: "line 2: the token of line 1 again"},
		{name: "not ASCII", file: "tökentokentokentoken", wantErr: "not printable ASCII"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens, err := ParseTokens(strings.NewReader(tc.file))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tokens.Len() != len(tc.want) {
				t.Fatalf("%d tokens, want %d", tokens.Len(), len(tc.want))
			}
			for tok, tenant := range tc.want {
				if got, ok := tokens.lookup(tok); !ok || got != tenant {
					t.Errorf("lookup(%s) = %q, %v; want %q", tok, got, ok, tenant)
				}
			}
			if _, ok := tokens.lookup(adminToken + "x"); ok {
				t.Error("an unknown token was found")
			}
		})
	}
}
