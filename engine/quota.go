package engine

import (
	"context"
	"time"
)

// Quota bounds what the sessions of one tenant hold together, so that one
// tenant cannot take the share of the others: a tenant creating sessions
// up to Config.MaxSessions would lock every other tenant out.
//
// A zero field means Config.TenantQuota's value, a negative one no limit.
// The global limits (Config.MaxSessions, ...) apply on top of a quota.
//
// # Notes
//
// What a tenant holds is counted by the loop, per owner of sessions, in
// the step that applies each change; a call is checked against the quota
// its own context carries. A call that would take its tenant past a field
// fails with a *LimitError (LimitTenantSessions, ...) and changes nothing.
// Only growth is refused: a set that makes a value smaller always passes,
// so a tenant over a quota that was lowered can still shrink. Unscoped
// (admin) calls are bounded by the global limits only, but what they add
// to a tenant's session counts toward that tenant.
type Quota struct {
	// MaxSessions bounds the tenant's live sessions (LimitTenantSessions;
	// default DefaultTenantMaxSessions). Expired sessions never count.
	MaxSessions int
	// MaxVariables bounds the variables of all its sessions
	// (LimitTenantVariables; default DefaultTenantMaxVariables).
	MaxVariables int
	// MaxBytes bounds the bytes of all its variables (LimitTenantBytes;
	// default DefaultTenantMaxBytes): each counts its value's payload, as
	// ValueBytes measures it.
	MaxBytes int
}

// Default tenant quota: what a zero field of Config.TenantQuota means. A
// tenth of the server's sessions (DefaultMaxSessions), ten sessions full
// of variables, a gigabyte.
const (
	DefaultTenantMaxSessions  = DefaultMaxSessions / 10
	DefaultTenantMaxVariables = 10 * DefaultMaxVariablesPerSession
	DefaultTenantMaxBytes     = 1 << 30
)

// quotaKey is the context key of WithQuota.
type quotaKey struct{}

// WithQuota returns a context whose engine calls, when WithTenant scopes
// them, are bounded by q rather than by Config.TenantQuota; q's zero
// fields still take Config.TenantQuota's. On an unscoped context it has no
// effect.
//
// Every token of a tenant should carry the same quota: the engine counts
// per tenant, and checks each call against the quota that call brings.
func WithQuota(ctx context.Context, q Quota) context.Context {
	return context.WithValue(ctx, quotaKey{}, q)
}

// or is q with its zero fields taken from def.
func (q Quota) or(def Quota) Quota {
	pick := func(n, d int) int {
		if n == 0 {
			return d
		}
		return n
	}
	return Quota{
		MaxSessions:  pick(q.MaxSessions, def.MaxSessions),
		MaxVariables: pick(q.MaxVariables, def.MaxVariables),
		MaxBytes:     pick(q.MaxBytes, def.MaxBytes),
	}
}

// usage is what the live sessions of one owner hold. Owned by the loop
// goroutine.
type usage struct {
	sessions, variables, bytes int
}

// own counts the new session s toward its owner.
func (st *state) own(s *session) {
	u := st.owners[s.owner]
	if u == nil {
		u = &usage{}
		st.owners[s.owner] = u
	}
	u.sessions++
	s.usage = u
}

// disown takes the removed session s and what it held off its owner; an
// owner left with no session loses its entry.
func (st *state) disown(s *session) {
	u := s.usage
	u.sessions--
	u.variables -= len(s.vars)
	u.bytes -= s.bytes
	if u.sessions == 0 {
		delete(st.owners, s.owner)
	}
}

// recharge makes slot count n bytes toward its session and owner.
func (s *session) recharge(slot *varSlot, n int) {
	d := n - slot.bytes
	slot.bytes = n
	s.bytes += d
	s.usage.bytes += d
}

// registerCharge and setCharge are what a variable counts toward its
// tenant's bytes once registered by req, or once set cannot fail: its
// value's payload. They are the one measure of Quota.MaxBytes, for the
// checks and the counts alike; bytes of metadata, once bounded, join the
// value's here.
func registerCharge(req RegisterRequest) int { return ValueBytes(req.Value) }

func setCharge(_ *varSlot, set *SetRequest) int { return ValueBytes(set.Value) }

// quota is the quota of the command being applied, its zero fields taken
// from Config.TenantQuota; ok is false for an unscoped command, which no
// quota bounds.
func (st *state) quota() (q Quota, ok bool) {
	if st.scope == nil {
		return Quota{}, false
	}
	return st.scope.quota.or(st.cfg.TenantQuota), true
}

// usageOf is what tenant holds now (zero if it has no session).
func (st *state) usageOf(tenant string) usage {
	if u := st.owners[tenant]; u != nil {
		return *u
	}
	return usage{}
}

// checkTenantSessions is called before a scoped command creates a
// session. Like the global limit, it removes expired sessions before it
// refuses, so they never count.
func (st *state) checkTenantSessions(now time.Time) error {
	q, ok := st.quota()
	if !ok || q.MaxSessions < 0 {
		return nil
	}
	tenant := st.scope.tenant
	if st.usageOf(tenant).sessions < q.MaxSessions {
		return nil
	}
	st.expireDue(now)
	n := st.usageOf(tenant).sessions
	if n < q.MaxSessions {
		return nil
	}
	return st.refuse(limTenantSessions, q.MaxSessions, "tenant %q holds %d sessions", tenant, n)
}

// checkTenantGrowth is called before a scoped command adds variables and
// bytes (negative: frees them) to s, whose owner is the command's tenant.
// Expired sessions of the tenant are removed before it refuses.
func (st *state) checkTenantGrowth(s *session, variables, bytes int, now time.Time) error {
	q, ok := st.quota()
	if !ok {
		return nil
	}
	over := func() (lim, limit, held int) {
		u := s.usage
		switch {
		case variables > 0 && q.MaxVariables >= 0 && u.variables+variables > q.MaxVariables:
			return limTenantVariables, q.MaxVariables, u.variables
		case bytes > 0 && q.MaxBytes >= 0 && u.bytes+bytes > q.MaxBytes:
			return limTenantBytes, q.MaxBytes, u.bytes
		}
		return -1, 0, 0
	}
	if lim, _, _ := over(); lim < 0 {
		return nil
	}
	st.expireDue(now) // never s: the command has just used it
	lim, limit, held := over()
	switch lim {
	case limTenantVariables:
		return st.refuse(lim, limit, "tenant %q holds %d variables", s.owner, held)
	case limTenantBytes:
		return st.refuse(lim, limit, "tenant %q holds %d bytes and this would add %d", s.owner, held, bytes)
	}
	return nil
}
