package grpcapi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// quotaServer is an engine behind a server with tokens, as serve wires
// them.
type quotaServer struct {
	eng    *engine.Engine
	srv    *Server
	auth   *Auth
	client pb.UnifiedBridgeClient
}

func newQuotaServer(t *testing.T, tokens string, ecfg engine.Config, cfg func(*Config)) *quotaServer {
	t.Helper()
	eng := engine.New(ecfg)
	t.Cleanup(func() { _ = eng.Close() })
	c := Config{Backend: eng}
	if cfg != nil {
		cfg(&c)
	}
	srv := New(c)
	auth := NewAuth(testTokens(t, tokens), nil)
	_, cc := serveLoopback(t, srv, auth.ServerOptions()...)
	return &quotaServer{eng: eng, srv: srv, auth: auth, client: pb.NewUnifiedBridgeClient(cc)}
}

// allSessions renders every session and its variables, as an admin sees
// them straight from the engine (no TTL refresh, no revision moved).
func (qs *quotaServer) allSessions(t *testing.T) string {
	t.Helper()
	infos, err := qs.eng.ListSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, in := range infos {
		fmt.Fprintf(&b, "%s owner=%s rev=%d vars=%d", in.ID, in.Owner, in.Revision, in.VariableCount)
		res, err := qs.eng.List(engine.WithTenant(context.Background(), in.Owner), in.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range res.Variables {
			fmt.Fprintf(&b, " %s=%s", v.Name, v.Value)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// openStream opens a watch of session and returns the error of its start:
// nil once the server has registered it (its headers arrived). The stream
// stays open until the test ends.
func openStream(ctx context.Context, c pb.UnifiedBridgeClient, session string) error {
	stream, err := c.WatchVariables(ctx, &pb.WatchVariablesRequest{SessionId: session})
	if err != nil {
		return err
	}
	md, err := stream.Header()
	if err == nil && len(md.Get(SnapshotRevisionHeader)) == 0 {
		_, err = stream.Recv() // ended without headers: refused
	}
	return err
}

// TestTenantQuotasOverGRPC: a tenant that fills a quota of its token file
// is refused with RESOURCE_EXHAUSTED, LIMIT_EXCEEDED and a QuotaFailure,
// nothing changes, and another tenant, under the server's defaults, still
// gets its whole share. The two tokens of acme share one quota.
func TestTenantQuotasOverGRPC(t *testing.T) {
	const tokens = adminToken + "\n" +
		acmeToken + " tenant=acme max_sessions=2 max_variables=2\n" +
		acmeToken2 + " tenant=acme max_bytes=16 max_watch_streams=2\n" +
		globexToken + " tenant=globex\n"
	str := func(n int) *pb.Value { return strV(strings.Repeat("x", n)) }
	tests := []struct {
		name  string
		limit string
		// setup prepares the tenant's session "<tenant>-s", already created.
		setup func(ctx context.Context, c pb.UnifiedBridgeClient, s string) error
		// grow is the i-th request that takes the tenant's usage up.
		grow func(ctx context.Context, c pb.UnifiedBridgeClient, s string, i int) error
		// fits is how many grow steps fit acme's quota and globex's.
		acme, globex int
	}{
		{"sessions", engine.LimitTenantSessions, nil,
			func(ctx context.Context, c pb.UnifiedBridgeClient, s string, i int) error {
				_, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: fmt.Sprintf("%s-%d", s, i)})
				return err
			}, 1, 2},
		{"variables", engine.LimitTenantVariables, nil,
			func(ctx context.Context, c pb.UnifiedBridgeClient, s string, i int) error {
				_, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: s, Name: fmt.Sprintf("v%d", i),
					Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: str(0)})
				return err
			}, 2, 3},
		{"bytes of registered values", engine.LimitTenantBytes, nil,
			func(ctx context.Context, c pb.UnifiedBridgeClient, s string, i int) error {
				_, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: s, Name: fmt.Sprintf("v%d", i),
					Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: str(10)})
				return err
			}, 1, 2},
		{"bytes of a SetVariable", engine.LimitTenantBytes,
			func(ctx context.Context, c pb.UnifiedBridgeClient, s string) error {
				_, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: s, Name: "v",
					Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: str(0)})
				return err
			},
			func(ctx context.Context, c pb.UnifiedBridgeClient, s string, i int) error {
				_, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: s, VariableIdentifier: "v", Value: str(8 * (i + 1))})
				return err
			}, 2, 3},
		{"bytes of an atomic SetVariables", engine.LimitTenantBytes,
			func(ctx context.Context, c pb.UnifiedBridgeClient, s string) error {
				for _, name := range []string{"v", "w"} {
					if _, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: s, Name: name,
						Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: str(0)}); err != nil {
						return err
					}
				}
				return nil
			},
			func(ctx context.Context, c pb.UnifiedBridgeClient, s string, i int) error {
				_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: s, Atomic: true, Updates: []*pb.SetVariableRequest{
					{VariableIdentifier: "v", Value: str(4 * (i + 1))}, {VariableIdentifier: "w", Value: str(4 * (i + 1))}}})
				return err
			}, 2, 3},
		{"watch streams", LimitTenantWatchStreams, nil,
			func(ctx context.Context, c pb.UnifiedBridgeClient, s string, _ int) error {
				return openStream(ctx, c, s)
			}, 2, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			qs := newQuotaServer(t, tokens,
				engine.Config{MaxSessions: 100, TenantQuota: engine.Quota{MaxSessions: 3, MaxVariables: 3, MaxBytes: 24}},
				func(c *Config) { c.TenantMaxWatchStreams = 3 })
			type caller struct {
				tenant string
				tokens []string // used in turn, step by step
				fits   int
				value  string // the quota in force
			}
			callers := []caller{
				{"acme", []string{acmeToken, acmeToken2}, tc.acme, "2"},
				{"globex", []string{globexToken}, tc.globex, "3"},
			}
			if tc.limit == engine.LimitTenantBytes {
				callers[0].value, callers[1].value = "16", "24"
			}
			for _, who := range callers {
				ctx := as(t, bearer(who.tokens[0]))
				s := who.tenant + "-s"
				if _, err := qs.client.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: s}); err != nil {
					t.Fatal(err)
				}
				if tc.setup != nil {
					if err := tc.setup(ctx, qs.client, s); err != nil {
						t.Fatalf("%s: setup: %v", who.tenant, err)
					}
				}
			}
			for round, who := range callers { // acme fills its quota, then globex
				s := who.tenant + "-s"
				ctx := func(i int) context.Context { return as(t, bearer(who.tokens[i%len(who.tokens)])) }
				for i := range who.fits {
					if err := tc.grow(ctx(i), qs.client, s, i); err != nil {
						t.Fatalf("%s: step %d of %d that fit: %v", who.tenant, i, who.fits, err)
					}
				}
				before := qs.allSessions(t)
				wantLimit(t, tc.grow(ctx(who.fits), qs.client, s, who.fits), tc.limit, who.value)
				if after := qs.allSessions(t); after != before {
					t.Fatalf("%s: state changed:\nbefore %s\nafter  %s", who.tenant, before, after)
				}
				if got := rejections(t, qs, tc.limit); got != uint64(round+1) {
					t.Fatalf("%s: %d rejections by %s, want %d", who.tenant, got, tc.limit, round+1)
				}
			}
			// An admin is bounded by the global limits only.
			for i := range 4 {
				if err := tc.grow(as(t, bearer(adminToken)), qs.client, "acme-s", 100+i); err != nil {
					t.Fatalf("admin, step %d: %v", i, err)
				}
			}
		})
	}
}

// rejections counts the refusals by limit, the engine's or the server's.
func rejections(t *testing.T, qs *quotaServer, limit string) uint64 {
	t.Helper()
	es, err := qs.eng.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return es.LimitRejections[limit] + qs.srv.Stats().LimitRejections[limit]
}

// TestTenantQuotaReload: new tokens bring new quotas to later calls; what
// the tenant holds stays counted.
func TestTenantQuotaReload(t *testing.T) {
	qs := newQuotaServer(t, acmeToken+" tenant=acme max_sessions=1\n", engine.Config{}, nil)
	create := func(id string) error {
		_, err := qs.client.InitializeSession(as(t, bearer(acmeToken)), &pb.InitializeSessionRequest{SessionId: id})
		return err
	}
	if err := create("a"); err != nil {
		t.Fatal(err)
	}
	wantLimit(t, create("b"), engine.LimitTenantSessions, "1")
	qs.auth.SetTokens(testTokens(t, acmeToken+" tenant=acme max_sessions=2\n"))
	if err := create("b"); err != nil {
		t.Fatal(err)
	}
	wantLimit(t, create("c"), engine.LimitTenantSessions, "2")
}

// TestTenantStreamSlots: a tenant's stream gives its slot back when it
// ends, and so does one refused for naming another tenant's session.
func TestTenantStreamSlots(t *testing.T) {
	qs := newQuotaServer(t, acmeToken+" tenant=acme max_watch_streams=1\n"+globexToken+" tenant=globex\n", engine.Config{}, nil)
	for _, s := range []struct{ tok, id string }{{acmeToken, "a"}, {globexToken, "g"}} {
		if _, err := qs.client.InitializeSession(as(t, bearer(s.tok)), &pb.InitializeSessionRequest{SessionId: s.id}); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 {
		if err := openStream(as(t, bearer(acmeToken)), qs.client, "g"); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("round %d: watching globex's session: %v, want PERMISSION_DENIED", round, err)
		}
		ctx, cancel := context.WithCancel(as(t, bearer(acmeToken)))
		if err := openStream(ctx, qs.client, "a"); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		wantLimit(t, openStream(as(t, bearer(acmeToken)), qs.client, "a"), LimitTenantWatchStreams, "1")
		cancel()
		waitFor(t, "the stream to end", func() bool { return qs.srv.ActiveStreams() == 0 })
	}
}

// TestNoTenantNoQuota: without tenants (no token file, or admin tokens)
// the tenant quotas never apply; the global limits do.
func TestNoTenantNoQuota(t *testing.T) {
	h := newHarness(t, harnessOptions{
		engine: engine.Config{MaxSessions: 3, TenantQuota: engine.Quota{MaxSessions: 1}},
		config: func(c *Config) { c.TenantMaxWatchStreams = 1 },
	})
	for i := range 3 {
		h.createSession(fmt.Sprintf("s%d", i))
	}
	_, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: "s3"})
	wantLimit(t, err, engine.LimitSessions, "3")
	h.watch(&pb.WatchVariablesRequest{SessionId: "s0"})
	h.watch(&pb.WatchVariablesRequest{SessionId: "s0"})
}

func TestParseTokenQuotas(t *testing.T) {
	const other = "another-token-0123456789"
	type quotas map[string]TenantQuota
	q := func(sessions, variables, bytes, streams int) TenantQuota {
		return TenantQuota{Quota: engine.Quota{MaxSessions: sessions, MaxVariables: variables, MaxBytes: bytes}, MaxWatchStreams: streams}
	}
	for _, tc := range []struct {
		name    string
		file    string
		want    quotas
		wantErr string // the error names the line
	}{
		{name: "every setting",
			file: acmeToken + " tenant=acme max_sessions=100 max_variables=200 max_bytes=300 max_watch_streams=50",
			want: quotas{"acme": q(100, 200, 300, 50)}},
		{name: "settings before the tenant",
			file: acmeToken + " max_sessions=7 tenant=acme",
			want: quotas{"acme": q(7, 0, 0, 0)}},
		{name: "no settings: the server's defaults",
			file: acmeToken + " tenant=acme\n" + adminToken,
			want: quotas{"acme": {}, "": {}}},
		{name: "0 is no limit",
			file: acmeToken + " tenant=acme max_bytes=0",
			want: quotas{"acme": q(0, 0, -1, 0)}},
		{name: "a tenant's settings spread over its lines",
			file: acmeToken + " tenant=acme max_sessions=5\n" + acmeToken2 + " tenant=acme max_bytes=1000\n" + globexToken + " tenant=globex max_sessions=1",
			want: quotas{"acme": q(5, 0, 1000, 0), "globex": q(1, 0, 0, 0)}},
		{name: "the same setting again, the same",
			file: acmeToken + " tenant=acme max_sessions=5\n" + acmeToken2 + " tenant=acme max_sessions=5",
			want: quotas{"acme": q(5, 0, 0, 0)}},

		{name: "lines of a tenant disagree",
			file:    acmeToken + " tenant=acme max_sessions=100\n# rotated\n" + acmeToken2 + " tenant=acme max_sessions=200",
			wantErr: `line 3: max_sessions=200 for tenant "acme", but line 1 says max_sessions=100`},
		{name: "no limit and a limit disagree",
			file:    acmeToken + " tenant=acme max_bytes=0\n" + acmeToken2 + " tenant=acme max_bytes=10",
			wantErr: `line 2: max_bytes=10 for tenant "acme", but line 1 says max_bytes=0`},
		{name: "a setting on an admin line", file: adminToken + " max_sessions=3", wantErr: "line 1: max_sessions needs tenant=NAME"},
		{name: "negative", file: acmeToken + " tenant=acme max_sessions=-1", wantErr: `line 1: max_sessions="-1": want a whole number`},
		{name: "a unit", file: acmeToken + " tenant=acme max_bytes=1GiB", wantErr: `line 1: max_bytes="1GiB": want a whole number`},
		{name: "a sign", file: acmeToken + " tenant=acme max_bytes=+5", wantErr: `line 1: max_bytes="+5"`},
		{name: "empty", file: acmeToken + " tenant=acme max_variables=", wantErr: `line 1: max_variables="": want a whole number`},
		{name: "too large", file: acmeToken + " tenant=acme max_bytes=99999999999999999999", wantErr: `line 1: max_bytes="99999999999999999999"`},
		{name: "twice on a line", file: acmeToken + " tenant=acme max_sessions=1 max_sessions=1", wantErr: "line 1: max_sessions is given twice"},
		{name: "unknown setting", file: acmeToken + " tenant=acme max_session=1", wantErr: `line 1: unknown option "max_session" (want tenant=NAME and max_sessions=N, `},
		{name: "a second word without '='", file: "\n" + acmeToken + " tenant=acme " + other, wantErr: "line 2: a word without '='"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens, err := ParseTokens(strings.NewReader(tc.file))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), acmeToken) || strings.Contains(err.Error(), other) {
					t.Fatalf("the error shows a token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for tenant, want := range tc.want {
				if got := tokens.Quota(tenant); got != want {
					t.Errorf("Quota(%q) = %+v, want %+v", tenant, got, want)
				}
			}
		})
	}
}

// TestStreamSlotsStress: goroutines of several tenants (and admins) take
// and give back stream slots at random. An independent count of the slots
// held, kept beside the server's, never passes a tenant's quota, the
// session limit or the server's, and at the end every slot is back.
func TestStreamSlotsStress(t *testing.T) {
	const maxTotal, perSession, perTenant = 12, 5, 3
	srv := New(Config{Backend: &recordingBackend{}, MaxWatchStreams: maxTotal, MaxWatchStreamsPerSession: perSession, TenantMaxWatchStreams: perTenant})
	tokens := testTokens(t, acmeToken+" tenant=acme max_watch_streams=2\n"+globexToken+" tenant=globex\n")
	limits := map[string]int{"acme": 2, "globex": perTenant}
	var mu sync.Mutex
	held := map[string]int{} // by tenant ("" admin), session and "total"
	take := func(keys ...string) {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			held[k]++
		}
		for k, n := range held {
			switch lim, ok := limits[k]; {
			case ok && n > lim:
				t.Errorf("tenant %s holds %d streams, quota %d", k, n, lim)
			case strings.HasPrefix(k, "s") && n > perSession:
				t.Errorf("session %s holds %d streams, limit %d", k, n, perSession)
			case k == "total" && n > maxTotal:
				t.Errorf("%d streams, limit %d", n, maxTotal)
			}
		}
	}
	give := func(keys ...string) {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			held[k]--
		}
	}
	var wg sync.WaitGroup
	var granted, refused atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			tenant := []string{"acme", "globex", ""}[w%3]
			ctx := context.Background()
			if tenant != "" {
				ctx = tokens.scope(ctx, tenant)
			}
			var mine []func()
			for range 2000 {
				if len(mine) > 0 && rng.IntN(2) == 0 {
					i := rng.IntN(len(mine))
					mine[i]()
					mine = append(mine[:i], mine[i+1:]...)
					continue
				}
				session := fmt.Sprintf("s%d", rng.IntN(3))
				release, err := srv.acquireStream(ctx, session)
				if err != nil {
					if status.Code(err) != codes.ResourceExhausted {
						t.Errorf("refused with %v", err)
					}
					refused.Add(1)
					continue
				}
				granted.Add(1)
				take(tenant, session, "total")
				mine = append(mine, func() { give(tenant, session, "total"); release() })
			}
			for _, r := range mine {
				r()
			}
		}()
	}
	wg.Wait()
	l := &srv.slots
	if l.total != 0 || len(l.bySession) != 0 || len(l.byTenant) != 0 {
		t.Fatalf("slots left: total %d, sessions %v, tenants %v", l.total, l.bySession, l.byTenant)
	}
	if granted.Load() == 0 || refused.Load() == 0 {
		t.Fatalf("%d granted, %d refused: the limits were never exercised", granted.Load(), refused.Load())
	}
	st := srv.Stats().LimitRejections
	if st[LimitTenantWatchStreams] == 0 {
		t.Fatalf("no refusal by %s: %v", LimitTenantWatchStreams, st)
	}
}

// TestOneTenantCannotLockOthersOut is the report's case: one tenant
// creating sessions up to --max-sessions locked every other tenant out.
// With a quota on its token line it is stopped at its share.
func TestOneTenantCannotLockOthersOut(t *testing.T) {
	qs := newQuotaServer(t, acmeToken+" tenant=acme max_sessions=3\n"+globexToken+" tenant=globex max_sessions=3\n",
		engine.Config{MaxSessions: 6}, nil)
	create := func(tok, id string) error {
		_, err := qs.client.InitializeSession(as(t, bearer(tok)), &pb.InitializeSessionRequest{SessionId: id})
		return err
	}
	refusedAt := -1
	for i := range 6 {
		if err := create(acmeToken, fmt.Sprintf("a%d", i)); err != nil {
			wantLimit(t, err, "tenant_max_sessions", "3")
			refusedAt = i
			break
		}
	}
	if refusedAt != 3 {
		t.Fatalf("acme was refused at session %d (-1: never), want 3", refusedAt)
	}
	for i := range 3 {
		if err := create(globexToken, fmt.Sprintf("g%d", i)); err != nil {
			t.Fatalf("globex's session %d: %v", i, err)
		}
	}
}
