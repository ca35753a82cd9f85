package grpcapi

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/varwatch/varwatch/engine"
)

// Per-tenant quotas of the token file.
//
// A tenant's line may carry settings after tenant=NAME, each KEY=N:
//
//	9a8b7c6d5e4f30211203f4e5d6c7b8a9 tenant=acme max_sessions=100 max_watch_streams=50
//
// KEY is a tenant limit's name less its "tenant_" prefix (max_sessions
// sets tenant_max_sessions, the limit of --tenant-max-sessions), N a whole
// number, 0 for no limit. What a line leaves unset is the server's default
// for every tenant (the --tenant-max-* flags).
//
// The tokens of one tenant share one quota, counted once for the tenant
// whichever token a call brings. So a setting belongs to the tenant, not
// to the line: it may be given on any of the tenant's lines, and applies
// to all of them; given on several, it must say the same everywhere. Two
// lines of a tenant that disagree (max_sessions=100 and max_sessions=200)
// are an error that names both lines, since either reading (the first, the
// last, the larger) would be a guess about which one the operator meant.
// Settings on an admin line are an error too: admin tokens have no quota.

// TenantQuota is a tenant's quota as its token file lines set it: the
// engine's part (sessions, variables, bytes: engine.Quota) and the
// server's (watch streams). A zero field means the server's default for
// every tenant (engine.Config.TenantQuota, Config.TenantMaxWatchStreams),
// a negative one no limit.
type TenantQuota struct {
	engine.Quota
	// MaxWatchStreams bounds the tenant's watch streams
	// (LimitTenantWatchStreams).
	MaxWatchStreams int
}

// quotaSettings are the keys of a token line's settings, in the order
// errors list them.
var quotaSettings = []struct {
	key   string
	field func(*TenantQuota) *int
}{
	{"max_sessions", func(q *TenantQuota) *int { return &q.MaxSessions }},
	{"max_variables", func(q *TenantQuota) *int { return &q.MaxVariables }},
	{"max_bytes", func(q *TenantQuota) *int { return &q.MaxBytes }},
	{"max_watch_streams", func(q *TenantQuota) *int { return &q.MaxWatchStreams }},
}

// setting is one KEY=N of a line, as written.
type setting struct {
	key, text string
	value     int // negative for 0: no limit
}

// parseSetting parses the KEY=N field f of a token line (KEY is not
// "tenant"); line holds the settings parsed so far, to refuse a key given
// twice.
func parseSetting(f string, line []setting) (setting, error) {
	k, v, hasValue := strings.Cut(f, "=")
	if !hasValue {
		// Not echoed: a word without '=' may well be a second token.
		return setting{}, fmt.Errorf("a word without '=' after the token (want tenant=NAME and %s)", settingKeys())
	}
	if settingField(&TenantQuota{}, k) == nil {
		return setting{}, fmt.Errorf("unknown option %q (want tenant=NAME and %s)", k, settingKeys())
	}
	for _, s := range line {
		if s.key == k {
			return setting{}, fmt.Errorf("%s is given twice", k)
		}
	}
	n, err := strconv.ParseUint(v, 10, strconv.IntSize-1)
	if err != nil {
		return setting{}, fmt.Errorf("%s=%q: want a whole number, 0 for no limit", k, v)
	}
	s := setting{key: k, text: v, value: int(n)}
	if n == 0 {
		s.value = -1
	}
	return s, nil
}

// settingField is the field of q that key sets, nil for no setting.
func settingField(q *TenantQuota, key string) *int {
	for _, s := range quotaSettings {
		if s.key == key {
			return s.field(q)
		}
	}
	return nil
}

func settingKeys() string {
	keys := make([]string, len(quotaSettings))
	for i, s := range quotaSettings {
		keys[i] = s.key + "=N"
	}
	return strings.Join(keys, ", ")
}

// quotaTable gathers the tenants' settings while a token file is parsed.
type quotaTable struct {
	quotas map[string]TenantQuota
	// from: the line and text of each tenant's settings, by key.
	from map[string]map[string]settingAt
}

// settingAt is where a tenant's setting was first given, for errors.
type settingAt struct {
	line int
	text string
}

// add records the settings of line n, whose token has tenant ("": admin).
func (qt *quotaTable) add(n int, tenant string, line []setting) error {
	if len(line) == 0 {
		return nil
	}
	if tenant == "" {
		return fmt.Errorf("line %d: %s needs tenant=NAME: admin tokens have no quota", n, line[0].key)
	}
	if qt.quotas == nil {
		qt.quotas, qt.from = map[string]TenantQuota{}, map[string]map[string]settingAt{}
	}
	q, from := qt.quotas[tenant], qt.from[tenant]
	if from == nil {
		from = map[string]settingAt{}
		qt.from[tenant] = from
	}
	for _, s := range line {
		f := settingField(&q, s.key)
		if prev, ok := from[s.key]; ok {
			if *f != s.value {
				return fmt.Errorf("line %d: %s=%s for tenant %q, but line %d says %s=%s: the tokens of a tenant share one quota, so its lines must agree",
					n, s.key, s.text, tenant, prev.line, s.key, prev.text)
			}
			continue
		}
		*f = s.value
		from[s.key] = settingAt{line: n, text: s.text}
	}
	qt.quotas[tenant] = q
	return nil
}

// Quota returns the quota the token file sets for tenant: zero fields are
// the server's defaults.
func (t *Tokens) Quota(tenant string) TenantQuota { return t.quotas[tenant] }

// quotaKey is the context key of the TenantQuota a call's token brought.
type quotaKey struct{}

// scope is ctx acting for tenant, under the quota of its token file lines:
// the engine's part for the engine (engine.WithQuota), the whole for the
// server's own limits (quotaFrom).
func (t *Tokens) scope(ctx context.Context, tenant string) context.Context {
	q := t.quotas[tenant]
	ctx = engine.WithTenant(ctx, tenant)
	if q == (TenantQuota{}) {
		return ctx
	}
	ctx = engine.WithQuota(ctx, q.Quota)
	return context.WithValue(ctx, quotaKey{}, q)
}

// quotaFrom is the TenantQuota of ctx's token (zero: none set).
func quotaFrom(ctx context.Context) TenantQuota {
	q, _ := ctx.Value(quotaKey{}).(TenantQuota)
	return q
}
