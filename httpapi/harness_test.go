package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// waitTimeout bounds every wait in these tests: a failure deadline, never
// an expected duration.
const waitTimeout = 10 * time.Second

// harness is one engine behind one grpcapi.Server, served both over gRPC
// on a loopback port (client) and over HTTP by this package (url).
type harness struct {
	t      *testing.T
	eng    *engine.Engine
	api    *grpcapi.Server
	url    string
	http   *httptest.Server
	client pb.UnifiedBridgeClient
	token  string // sent by grpc() when set
}

type harnessOptions struct {
	engine    engine.Config
	heartbeat time.Duration
	tokens    string // a token file's text; empty: no auth
	config    func(*Config)
	grpc      func(*grpcapi.Config)
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	eng := engine.New(opts.engine)
	gcfg := grpcapi.Config{Backend: eng, HeartbeatInterval: opts.heartbeat}
	if opts.grpc != nil {
		opts.grpc(&gcfg)
	}
	api := grpcapi.New(gcfg)
	sopts := []grpc.ServerOption{grpcapi.ServerOption()}
	cfg := Config{API: api}
	if opts.tokens != "" {
		toks, err := grpcapi.ParseTokens(strings.NewReader(opts.tokens))
		if err != nil {
			t.Fatal(err)
		}
		auth := grpcapi.NewAuth(toks, nil)
		cfg.Auth = auth
		sopts = append(sopts, auth.ServerOptions()...)
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	gs := grpc.NewServer(sopts...)
	health := grpcapi.Register(gs, api)
	cfg.Health = health
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(New(cfg))
	t.Cleanup(func() {
		_ = conn.Close()
		api.Shutdown() // ends the watch streams, HTTP ones too
		hs.Close()
		gs.Stop()
		<-served
		_ = eng.Close()
	})
	return &harness{t: t, eng: eng, api: api, url: hs.URL, http: hs, client: pb.NewUnifiedBridgeClient(conn)}
}

// ctx is a context for one gRPC call, with the harness's token.
func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	h.t.Cleanup(cancel)
	if h.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.token)
	}
	return ctx
}

// post sends body to POST /v1/method with token (if any) and returns the
// HTTP status and the decoded JSON answer.
func (h *harness) post(method, token, body string) (int, map[string]any) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url+"/v1/"+method, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	var out map[string]any
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&out); err != nil {
		h.t.Fatalf("POST /v1/%s: answer %q is not JSON: %v", method, b, err)
	}
	return resp.StatusCode, out
}

// mustPost is post that expects 200.
func (h *harness) mustPost(method, token, body string) map[string]any {
	h.t.Helper()
	code, out := h.post(method, token, body)
	if code != http.StatusOK {
		h.t.Fatalf("POST /v1/%s %s: %d %v", method, body, code, out)
	}
	return out
}

// reason is the ErrorInfo reason of a google.rpc.Status JSON body.
func reason(st map[string]any) string {
	ds, _ := st["details"].([]any)
	for _, d := range ds {
		if m, ok := d.(map[string]any); ok && m["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" {
			r, _ := m["reason"].(string)
			return r
		}
	}
	return ""
}

// errorInfoMeta is the ErrorInfo metadata of a google.rpc.Status JSON body.
func errorInfoMeta(st map[string]any) map[string]any {
	ds, _ := st["details"].([]any)
	for _, d := range ds {
		if m, ok := d.(map[string]any); ok && m["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" {
			md, _ := m["metadata"].(map[string]any)
			return md
		}
	}
	return nil
}

func enginecfgWithMaxSessions(n int) engine.Config { return engine.Config{MaxSessions: n} }
