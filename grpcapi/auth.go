package grpcapi

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Bearer-token authentication and tenant scoping.
//
// Every RPC except the standard health service (grpc.health.v1.Health, so
// load balancers and orchestrators can probe without a secret) and server
// reflection must carry the metadata "authorization: Bearer <token>" with
// a token of the token file. Reflection stays open because grpcurl needs
// it to call anything, health included, and it describes only the API,
// which is public (proto/varwatch/v1), never data. A missing or unknown
// token is UNAUTHENTICATED.
//
// A token is either an admin token, which sees and uses every session, or
// scoped to a tenant. A tenant's calls run under engine.WithTenant: the
// sessions it creates are its own, ListSessions shows only those, and any
// call naming another tenant's session (or one created by an admin) is
// PERMISSION_DENIED and changes nothing. The engine records the owner with
// the session and checks it in the same loop step that applies the call,
// so ownership dies with the session (deleted or expired) and the id is
// free for anyone again.

// MinTokenLength is the shortest token a token file may hold: shorter
// tokens are guessable.
const MinTokenLength = 16

// Tokens is a parsed token file. It is immutable once built.
//
// The format is one token per line; blank lines and lines starting with
// '#' are ignored. A line is the token alone (an admin token) or the token
// followed by tenant=NAME (a token scoped to tenant NAME; several tokens may
// share a tenant, for rotation) and the tenant's quota settings, if any
// (KEY=N, see quota.go):
//
//	# operators
//	3f6c1b9e0d2a4c8e9b7a5d3f1e0c2b4a
//	# acme's services
//	9a8b7c6d5e4f30211203f4e5d6c7b8a9 tenant=acme max_sessions=100 max_watch_streams=50
//
// Tokens are at least MinTokenLength printable ASCII characters without
// spaces; tenant names are letters, digits, '.', '_' and '-'.
type Tokens struct {
	entries []tokenEntry
	quotas  map[string]TenantQuota // by tenant: what its lines set (quota.go)
}

// tokenEntry is one token, kept only as its SHA-256 so that comparisons
// take the same time whatever the length of the token presented.
type tokenEntry struct {
	hash   [sha256.Size]byte
	tenant string // "" for an admin token
}

// Len returns how many tokens t holds.
func (t *Tokens) Len() int { return len(t.entries) }

// LoadTokenFile reads a token file (see Tokens).
func LoadTokenFile(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseTokens parses the token file format (see Tokens). A file with no
// token is an error: it would lock everyone out, which is more likely a
// truncated file than an intent.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]int{}
	var quotas quotaTable
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		tok := fields[0]
		if len(tok) < MinTokenLength {
			return nil, fmt.Errorf("line %d: token is shorter than %d characters", n, MinTokenLength)
		}
		for _, c := range []byte(tok) {
			if c < 0x21 || c > 0x7e {
				return nil, fmt.Errorf("line %d: token has a character that is not printable ASCII", n)
			}
		}
		e := tokenEntry{hash: sha256.Sum256([]byte(tok))}
		var settings []setting
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(f, "=")
			if k != "tenant" {
				s, err := parseSetting(f, settings)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", n, err)
				}
				settings = append(settings, s)
				continue
			}
			if !validTenant(v) {
				return nil, fmt.Errorf("line %d: bad tenant name %q (letters, digits, '.', '_', '-')", n, v)
			}
			if e.tenant != "" {
				return nil, fmt.Errorf("line %d: more than one tenant", n)
			}
			e.tenant = v
		}
		if err := quotas.add(n, e.tenant, settings); err != nil {
			return nil, err
		}
		if prev, ok := seen[e.hash]; ok {
			return nil, fmt.Errorf("line %d: the token of line %d again", n, prev)
		}
		seen[e.hash] = n
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("no tokens")
	}
	t.quotas = quotas.quotas
	return t, nil
}

func validTenant(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// lookup finds tok. It compares tok's hash with every entry, in constant
// time each and without stopping at a match, so neither the token's length
// nor how much of it is right shows in the time it takes.
func (t *Tokens) lookup(tok string) (tenant string, ok bool) {
	h := sha256.Sum256([]byte(tok))
	for i := range t.entries {
		if subtle.ConstantTimeCompare(t.entries[i].hash[:], h[:]) == 1 {
			tenant, ok = t.entries[i].tenant, true
		}
	}
	return tenant, ok
}

// Auth authenticates calls with the tokens it holds, as gRPC server
// interceptors. SetTokens swaps the tokens while the server runs (on
// SIGHUP); calls in flight keep the identity they started with.
type Auth struct {
	tokens atomic.Pointer[Tokens]
	log    hclog.Logger
}

// NewAuth returns an Auth holding tokens. log (nil: discard) gets a Debug
// line per refused call.
func NewAuth(tokens *Tokens, log hclog.Logger) *Auth {
	if tokens == nil {
		panic("grpcapi: NewAuth with nil tokens")
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	a := &Auth{log: log}
	a.tokens.Store(tokens)
	return a
}

// SetTokens replaces the tokens; later calls are checked against them.
func (a *Auth) SetTokens(t *Tokens) {
	if t == nil {
		panic("grpcapi: SetTokens(nil)")
	}
	a.tokens.Store(t)
}

// ServerOptions are the tap handle and interceptors to pass to
// grpc.NewServer. The interceptors chain with other interceptors
// (grpc.ChainUnaryInterceptor); the tap handle is the server's only one
// (gRPC allows one).
//
// # Notes
//
// The tap handle refuses a call without a valid token when its headers
// arrive, before gRPC starts a goroutine for it or reads its request: a
// unary handler runs only once its request has been read, so without the
// tap a stranger could open streams that send headers and nothing else
// and hold a goroutine (and the headers) each, for as long as the
// connection lives. The interceptors check again and run the call scoped
// to its tenant.
func (a *Auth) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InTapHandle(a.tap),
		grpc.ChainUnaryInterceptor(a.unary),
		grpc.ChainStreamInterceptor(a.stream),
	}
}

// openPrefixes start the methods callable without a token: health checks
// and server reflection (both versions grpcurl may use).
var openPrefixes = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// authenticate checks the call's token and returns the context to run it
// with: scoped to the token's tenant and its quota, if it has one.
func (a *Auth) authenticate(ctx context.Context, method string) (context.Context, error) {
	for _, p := range openPrefixes {
		if strings.HasPrefix(method, p) {
			return ctx, nil
		}
	}
	tok, err := bearerToken(ctx)
	if err != nil {
		a.refused(ctx, method, err)
		return nil, err
	}
	tokens := a.tokens.Load()
	tenant, ok := tokens.lookup(tok)
	if !ok {
		err := statusError(ReasonTokenInvalid, "invalid token", nil)
		a.refused(ctx, method, err)
		return nil, err
	}
	if tenant != "" {
		ctx = tokens.scope(ctx, tenant) // the tenant and its quota
	}
	return ctx, nil
}

// Authenticate checks the token of ctx's incoming "authorization"
// metadata for a call of fullMethod ("/varwatch.v1.UnifiedBridge/Ping"),
// exactly as the interceptors do, and returns the context to run the call
// with: scoped to the token's tenant and its quota, if it has one. Its
// error is a gRPC status (UNAUTHENTICATED). It is for doors other than
// gRPC (package httpapi) that call the Server's methods in-process.
func (a *Auth) Authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	return a.authenticate(ctx, fullMethod)
}

func (a *Auth) refused(ctx context.Context, method string, err error) {
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	a.log.Debug("call refused", "method", method, "peer", addr, "reason", status.Convert(err).Message())
}

// bearerToken is the token of the call's "authorization: Bearer <token>"
// metadata.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch len(vals) {
	case 0:
		return "", statusError(ReasonTokenMissing, `missing credentials: send the metadata "authorization: Bearer <token>"`, nil)
	case 1:
	default:
		return "", statusError(ReasonTokenMalformed, "more than one authorization header", nil)
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", statusError(ReasonTokenMalformed, `authorization is not "Bearer <token>"`, nil)
	}
	return strings.TrimSpace(tok), nil
}

// tap runs on the connection's reader goroutine as each stream's headers
// arrive (with the transport's lock held): it must stay cheap, and a
// token lookup is a hash and a comparison per token. Its error is the
// stream's status.
func (a *Auth) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if _, err := a.authenticate(ctx, info.FullMethodName); err != nil {
		return nil, err
	}
	return ctx, nil
}

func (a *Auth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *Auth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if ctx != ss.Context() {
		ss = &authedStream{ServerStream: ss, ctx: ctx}
	}
	return handler(srv, ss)
}

// authedStream is a stream whose Context carries the caller's tenant.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }
