package engine

import (
	"context"
	"errors"
)

// ErrPermissionDenied: a caller scoped to a tenant (WithTenant) named a
// session that another tenant owns.
var ErrPermissionDenied = errors.New("engine: permission denied")

// tenantKey is the context key of WithTenant.
type tenantKey struct{}

// WithTenant returns a context whose engine calls act for tenant: sessions
// they create are owned by it (SessionInfo.Owner), ListSessions shows only
// its sessions, and every call naming a session another tenant owns (or an
// unowned one) fails with ErrPermissionDenied, without touching it. What
// its sessions hold together is bounded by its Quota (WithQuota, or
// Config.TenantQuota). A context without a tenant is unscoped: it sees and
// uses every session, bounded by the global limits only.
//
// The engine checks ownership in the same loop step that applies the call,
// so a session cannot change hands between the check and the use.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// TenantFrom returns the tenant of ctx, if WithTenant scoped it.
func TenantFrom(ctx context.Context) (string, bool) {
	t, ok := ctx.Value(tenantKey{}).(string)
	return t, ok
}

// scope is the tenant a command acts for, and its quota as the caller's
// context gave it (WithQuota; zero fields: Config.TenantQuota's).
type scope struct {
	tenant string
	quota  Quota
}

// scoped runs a command for a tenant: state.scope is set for exactly the
// duration of its apply, on the loop goroutine.
type scoped struct {
	command
	scope scope
}

func (c *scoped) apply(st *state) {
	st.scope = &c.scope
	defer func() { st.scope = nil }()
	c.command.apply(st)
}

func (c *scoped) fail(err error) { c.command.(failable).fail(err) }

// withScope wraps c for the tenant of ctx, if any. The context is read
// here, on the caller's goroutine, never by the loop.
func withScope(ctx context.Context, c command) command {
	if t, ok := TenantFrom(ctx); ok {
		q, _ := ctx.Value(quotaKey{}).(Quota)
		return &scoped{command: c, scope: scope{tenant: t, quota: q}}
	}
	return c
}

// allows reports whether the command being applied may use s.
func (st *state) allows(s *session) bool {
	return st.scope == nil || st.scope.tenant == s.owner
}
