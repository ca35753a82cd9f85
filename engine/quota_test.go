package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// allState renders every session (as an admin sees them) for comparison.
func allState(t *testing.T, e *Engine) string {
	t.Helper()
	infos, err := e.ListSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, in := range infos {
		b.WriteString(in.ID + "{" + snapshotState(t, e, in.ID) + "} ")
	}
	return b.String()
}

// TestTenantQuotas: a tenant that fills a quota is refused with a
// *LimitError naming it, nothing changes, and another tenant still gets
// its whole share.
func TestTenantQuotas(t *testing.T) {
	x := func(n int) Value { return String(strings.Repeat("x", n)) }
	tests := []struct {
		name  string
		limit string
		value int64
		// setup prepares tenant's session "<tenant>-s" (already created).
		setup func(ctx context.Context, e *Engine, s string) error
		// grow is the i-th request that takes the tenant's usage up.
		grow func(ctx context.Context, e *Engine, s string, i int) error
		fits int // how many grow steps fit the quota
	}{
		{"sessions", LimitTenantSessions, 3, nil,
			func(ctx context.Context, e *Engine, s string, i int) error {
				_, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: fmt.Sprintf("%s-%d", s, i)})
				return err
			}, 2}, // the session of setup is the first
		{"variables", LimitTenantVariables, 3, nil,
			func(ctx context.Context, e *Engine, s string, i int) error {
				_, err := e.Register(ctx, RegisterRequest{Session: s, Name: fmt.Sprintf("v%d", i), Type: TypeString, Value: x(0)})
				return err
			}, 3},
		{"bytes of registered values", LimitTenantBytes, 20, nil,
			func(ctx context.Context, e *Engine, s string, i int) error {
				_, err := e.Register(ctx, RegisterRequest{Session: s, Name: fmt.Sprintf("v%d", i), Type: TypeString, Value: x(8)})
				return err
			}, 2},
		{"bytes of a set", LimitTenantBytes, 20,
			func(ctx context.Context, e *Engine, s string) error {
				_, err := e.Register(ctx, RegisterRequest{Session: s, Name: "v", Type: TypeString, Value: x(0)})
				return err
			},
			func(ctx context.Context, e *Engine, s string, i int) error {
				_, err := e.Set(ctx, SetRequest{Session: s, Variable: "v", Value: x(8 * (i + 1))})
				return err
			}, 2},
		{"bytes of an atomic multi-set", LimitTenantBytes, 20,
			func(ctx context.Context, e *Engine, s string) error {
				for _, n := range []string{"v", "w"} {
					if _, err := e.Register(ctx, RegisterRequest{Session: s, Name: n, Type: TypeString, Value: x(0)}); err != nil {
						return err
					}
				}
				return nil
			},
			func(ctx context.Context, e *Engine, s string, i int) error {
				_, err := e.SetMany(ctx, SetManyRequest{Session: s, Atomic: true, Sets: []SetRequest{
					{Variable: "v", Value: x(4 * (i + 1))}, {Variable: "w", Value: x(4 * (i + 1))}}})
				return err
			}, 2},
		{"bytes of a non-atomic multi-set", LimitTenantBytes, 20,
			func(ctx context.Context, e *Engine, s string) error {
				_, err := e.Register(ctx, RegisterRequest{Session: s, Name: "v", Type: TypeString, Value: x(0)})
				return err
			},
			func(ctx context.Context, e *Engine, s string, i int) error {
				res, err := e.SetMany(ctx, SetManyRequest{Session: s, Sets: []SetRequest{{Variable: "v", Value: x(8 * (i + 1))}}})
				if err != nil {
					return err
				}
				return res.Items[0].Err
			}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(Config{TenantQuota: Quota{MaxSessions: 3, MaxVariables: 3, MaxBytes: 20}})
			defer e.Close()
			for _, tenant := range []string{"acme", "globex"} {
				ctx := WithTenant(context.Background(), tenant)
				s := tenant + "-s"
				if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: s}); err != nil {
					t.Fatal(err)
				}
				if tc.setup != nil {
					if err := tc.setup(ctx, e, s); err != nil {
						t.Fatalf("%s: setup: %v", tenant, err)
					}
				}
			}
			// acme fills its quota; then globex, whose share acme did not touch.
			for round, tenant := range []string{"acme", "globex"} {
				ctx := WithTenant(context.Background(), tenant)
				for i := range tc.fits {
					if err := tc.grow(ctx, e, tenant+"-s", i); err != nil {
						t.Fatalf("%s: step %d of %d that fit: %v", tenant, i, tc.fits, err)
					}
				}
				before := allState(t, e)
				checkLimit(t, tc.grow(ctx, e, tenant+"-s", tc.fits), tc.limit, tc.value)
				if after := allState(t, e); after != before {
					t.Fatalf("%s: state changed:\nbefore %s\nafter  %s", tenant, before, after)
				}
				if got := mustStats(t, e).LimitRejections[tc.limit]; got != uint64(round+1) {
					t.Fatalf("%s: Stats().LimitRejections[%s] = %d, want %d", tenant, tc.limit, got, round+1)
				}
			}
		})
	}
}

// TestTenantQuotaMakesRoomAgain walks one tenant through its quota:
// what is deleted, closed or expired stops counting, shrinking always
// passes, WithQuota overrides the defaults, and admins are bounded by the
// global limits only.
func TestTenantQuotaMakesRoomAgain(t *testing.T) {
	clock := &tenantClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := New(Config{Now: clock.Now, MaxSessions: 4, TenantQuota: Quota{MaxSessions: 1, MaxVariables: 1, MaxBytes: 8}})
	defer e.Close()
	admin := context.Background()
	acme := WithTenant(admin, "acme")
	create := func(ctx context.Context, id string) func() error {
		return func() error {
			_, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: id, TTL: time.Minute})
			return err
		}
	}
	register := func(ctx context.Context, s, name string, n int) func() error {
		return func() error {
			_, err := e.Register(ctx, RegisterRequest{Session: s, Name: name, Type: TypeString, Value: String(strings.Repeat("x", n))})
			return err
		}
	}
	set := func(ctx context.Context, s, name string, n int) func() error {
		return func() error {
			_, err := e.Set(ctx, SetRequest{Session: s, Variable: name, Value: String(strings.Repeat("x", n))})
			return err
		}
	}
	steps := []struct {
		name string
		do   func() error
		want string // limit name, or "" for success
	}{
		{"first session", create(acme, "a"), ""},
		{"an existing id is no new session", create(acme, "a"), ""},
		{"second session", create(acme, "b"), LimitTenantSessions},
		{"a value at the quota", register(acme, "a", "v", 8), ""},
		{"second variable", register(acme, "a", "w", 0), LimitTenantVariables},
		{"growing past the bytes", set(acme, "a", "v", 9), LimitTenantBytes},
		{"shrinking", set(acme, "a", "v", 2), ""},
		{"growing back to the quota", set(acme, "a", "v", 8), ""},
		{"deleting makes room", func() error {
			if _, err := e.Delete(acme, "a", "v"); err != nil {
				return err
			}
			return register(acme, "a", "w", 8)()
		}, ""},
		{"admins are bounded by the global limits only", func() error {
			if err := create(admin, "admin-1")(); err != nil {
				return err
			}
			return register(admin, "a", "big", 100)() // into acme's session
		}, ""},
		{"what an admin added counts toward the tenant", register(acme, "a", "z", 0), LimitTenantVariables},
		{"a tenant over its quota may still shrink", set(acme, "a", "big", 1), ""},
		{"a larger quota of the call's context", create(WithQuota(acme, Quota{MaxSessions: 2}), "b"), ""},
		{"its zero fields keep the default", register(WithQuota(acme, Quota{MaxSessions: 2}), "b", "v", 0), LimitTenantVariables},
		{"negative is no limit", register(WithQuota(acme, Quota{MaxVariables: -1, MaxBytes: -1}), "b", "v", 100), ""},
		{"the global limit applies on top", create(WithQuota(acme, Quota{MaxSessions: 10}), "c"), ""},
		{"sessions at the global limit", create(WithQuota(acme, Quota{MaxSessions: 10}), "d"), LimitSessions},
		{"expired sessions make room at once", func() error {
			clock.advance(time.Minute)
			if err := create(acme, "e")(); err != nil {
				return err
			}
			return register(acme, "e", "v", 8)() // a's variables and bytes are gone too
		}, ""},
	}
	for _, step := range steps { // in order: each step builds on the last
		err := step.do()
		if step.want == "" {
			if err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			continue
		}
		var le *LimitError
		if !errors.As(err, &le) || le.Limit != step.want {
			t.Fatalf("%s: got %v, want limit %s", step.name, err, step.want)
		}
	}
}

func TestTenantQuotaDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Quota
		want Quota
	}{
		{"zero is the default", Quota{}, Quota{DefaultTenantMaxSessions, DefaultTenantMaxVariables, DefaultTenantMaxBytes}},
		{"negative is no limit", Quota{-1, -1, -1}, Quota{-1, -1, -1}},
		{"set values stay", Quota{1, 2, 3}, Quota{1, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Config{TenantQuota: tc.in}).withDefaults().TenantQuota; got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// recount is the model of state.owners: usage counted again from scratch,
// from the sessions and variables themselves.
func recount(st *state) map[string]usage {
	m := map[string]usage{}
	for _, s := range st.sessions {
		u := m[s.owner]
		u.sessions++
		u.variables += len(s.vars)
		for _, slot := range s.vars {
			u.bytes += ValueBytes(slot.cur.Value)
		}
		m[s.owner] = u
	}
	return m
}

// TestTenantQuotaStress: tenants race to create, register, set, delete,
// close and let expire, with quotas of their own; at random moments and
// at the end, the loop's counts equal a recount from the sessions, and no
// tenant holds more than its quota.
func TestTenantQuotaStress(t *testing.T) {
	clock := &tenantClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := New(Config{Now: clock.Now, TenantQuota: Quota{MaxSessions: 4, MaxVariables: 10, MaxBytes: 200}})
	defer e.Close()
	quotas := map[string]Quota{
		"acme":   {},                                              // the defaults
		"globex": {MaxSessions: 2, MaxVariables: 3, MaxBytes: 40}, // tighter
		"hooli":  {MaxSessions: 6, MaxVariables: 20, MaxBytes: -1},
	}
	check := func() {
		inLoop(t, e, func(st *state) {
			want := recount(st)
			if len(want) != len(st.owners) {
				t.Errorf("owners: %d entries, recount has %d", len(st.owners), len(want))
			}
			for owner, w := range want {
				got := st.owners[owner]
				if got == nil || *got != w {
					t.Errorf("owner %q: counted %+v, recount %+v", owner, got, w)
				}
				q := quotas[owner].or(st.cfg.TenantQuota)
				if w.sessions > q.MaxSessions || w.variables > q.MaxVariables || (q.MaxBytes >= 0 && w.bytes > q.MaxBytes) {
					t.Errorf("owner %q holds %+v, over its quota %+v", owner, w, q)
				}
			}
		})
	}
	const workers, ops = 6, 1500
	var wg sync.WaitGroup
	var refused sync.Map // limit name -> true
	for w := range workers {
		tenant := []string{"acme", "globex", "hooli"}[w%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			ctx := WithTenant(context.Background(), tenant)
			if q := quotas[tenant]; q != (Quota{}) {
				ctx = WithQuota(ctx, q)
			}
			sid := func() string { return fmt.Sprintf("%s-%d", tenant, rng.IntN(8)) }
			val := func() Value { return String(strings.Repeat("x", rng.IntN(30))) }
			for range ops {
				var err error
				switch rng.IntN(10) {
				case 0, 1:
					_, _, err = e.CreateSession(ctx, CreateSessionRequest{ID: sid(), TTL: time.Duration(1+rng.IntN(3)) * time.Second})
				case 2, 3:
					_, err = e.Register(ctx, RegisterRequest{Session: sid(), Name: fmt.Sprintf("v%d", rng.IntN(6)), Type: TypeString, Value: val()})
				case 4, 5:
					_, err = e.Set(ctx, SetRequest{Session: sid(), Variable: fmt.Sprintf("v%d", rng.IntN(6)), Value: val()})
				case 6:
					var res SetManyResult
					res, err = e.SetMany(ctx, SetManyRequest{Session: sid(), Atomic: rng.IntN(2) == 0, Sets: []SetRequest{
						{Variable: "v0", Value: val()}, {Variable: "v1", Value: val()}}})
					for _, it := range res.Items {
						if it.Err != nil {
							err = it.Err
						}
					}
				case 7:
					_, err = e.Delete(ctx, sid(), fmt.Sprintf("v%d", rng.IntN(6)))
				case 8:
					_, err = e.CloseSession(ctx, sid())
				case 9:
					clock.advance(time.Duration(rng.IntN(500)) * time.Millisecond)
				}
				var le *LimitError
				if errors.As(err, &le) {
					refused.Store(le.Limit, true)
				}
			}
		}()
	}
	for range 20 {
		check()
	}
	wg.Wait()
	check()
	for _, lim := range []string{LimitTenantSessions, LimitTenantVariables, LimitTenantBytes} {
		if _, ok := refused.Load(lim); !ok {
			t.Errorf("no request was refused by %s: the quotas were never reached", lim)
		}
	}
}

// BenchmarkLoopApplyScoped is BenchmarkLoopApply's one set per command,
// as a tenant under a quota: what counting and checking the quota adds to
// the loop's work per set.
//
//	go test -run '^$' -bench 'LoopApply' -benchmem ./engine
func BenchmarkLoopApplyScoped(b *testing.B) {
	st := newState(Config{}.withDefaults())
	st.scope = &scope{tenant: "acme", quota: Quota{MaxBytes: 1 << 20}}
	now := time.Now()
	if _, _, err := st.createSession(CreateSessionRequest{ID: "b"}, now); err != nil {
		b.Fatal(err)
	}
	reg := RegisterRequest{Session: "b", Name: "v", Type: TypeString, Value: String("")}
	if _, _, err := st.register(reg, checkRegistration(reg, &st.cfg), nil, now); err != nil {
		b.Fatal(err)
	}
	st.publish()
	values := []Value{String("short"), String(strings.Repeat("x", 100))} // the charge moves both ways
	sets := []SetRequest{{Variable: "v"}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sets[0].Value = values[i%2]
		if _, _, err := st.setMany(SetManyRequest{Session: "b", Sets: sets}, prechecked(sets), now); err != nil {
			b.Fatal(err)
		}
		st.publish()
	}
}
