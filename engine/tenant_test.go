package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// tenantClock is a clock tests move by hand.
type tenantClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *tenantClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *tenantClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestTenantScoping(t *testing.T) {
	clock := &tenantClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := New(Config{Now: clock.Now})
	defer e.Close()
	admin := context.Background()
	acme := WithTenant(admin, "acme")
	globex := WithTenant(admin, "globex")

	info, created, err := e.CreateSession(acme, CreateSessionRequest{ID: "a", Owner: "someone-else"})
	if err != nil || !created || info.Owner != "acme" {
		t.Fatalf("create as acme: info %+v created %v err %v; want owner acme", info, created, err)
	}
	if _, err := e.Register(acme, RegisterRequest{Session: "a", Name: "x", Type: TypeFloat, Value: Float(1)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.CreateSession(globex, CreateSessionRequest{ID: "g"}); err != nil {
		t.Fatal(err)
	}
	if info, _, err := e.CreateSession(admin, CreateSessionRequest{ID: "unowned"}); err != nil || info.Owner != "" {
		t.Fatalf("create as admin: %+v %v", info, err)
	}
	clock.advance(time.Minute)
	before, err := e.GetSession(admin, "a") // refreshes "a" at the new time
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)

	denied := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"create", func(ctx context.Context) error {
			_, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "a"})
			return err
		}},
		{"get session", func(ctx context.Context) error { _, err := e.GetSession(ctx, "a"); return err }},
		{"heartbeat", func(ctx context.Context) error { _, err := e.Heartbeat(ctx, "a"); return err }},
		{"close", func(ctx context.Context) error { _, err := e.CloseSession(ctx, "a"); return err }},
		{"register", func(ctx context.Context) error {
			_, err := e.Register(ctx, RegisterRequest{Session: "a", Name: "y", Type: TypeFloat, Value: Float(1)})
			return err
		}},
		{"get", func(ctx context.Context) error { _, err := e.Get(ctx, "a", "x"); return err }},
		{"get many", func(ctx context.Context) error { _, err := e.GetMany(ctx, "a", []string{"x"}); return err }},
		{"set", func(ctx context.Context) error {
			_, err := e.Set(ctx, SetRequest{Session: "a", Variable: "x", Value: Float(2)})
			return err
		}},
		{"set many", func(ctx context.Context) error {
			_, err := e.SetMany(ctx, SetManyRequest{Session: "a", Atomic: true, Sets: []SetRequest{{Session: "a", Variable: "x", Value: Float(2)}}})
			return err
		}},
		{"list", func(ctx context.Context) error { _, err := e.List(ctx, "a", ""); return err }},
		{"delete", func(ctx context.Context) error { _, err := e.Delete(ctx, "a", "x"); return err }},
		{"watch", func(ctx context.Context) error {
			sub, err := e.Watch(ctx, WatchRequest{Session: "a", IncludeInitialValues: true})
			if err == nil {
				sub.Close()
			}
			return err
		}},
	}
	for _, who := range []struct {
		name string
		ctx  context.Context
	}{{"other tenant", globex}, {"empty tenant on an owned session", WithTenant(admin, "")}} {
		for _, tc := range denied {
			t.Run(who.name+"/"+tc.name, func(t *testing.T) {
				if err := tc.do(who.ctx); !errors.Is(err, ErrPermissionDenied) {
					t.Fatalf("err = %v, want ErrPermissionDenied", err)
				}
			})
		}
	}
	t.Run("denied calls left the session untouched", func(t *testing.T) {
		after, err := e.GetSession(acme, "a")
		if err != nil {
			t.Fatal(err)
		}
		if after.Revision != before.Revision || after.VariableCount != 1 || !after.LastUsedAt.Equal(before.LastUsedAt.Add(time.Minute)) {
			// LastUsedAt moved only by this GetSession (one minute later).
			t.Fatalf("after denied calls: %+v; before: %+v", after, before)
		}
		v, err := e.Get(acme, "a", "x")
		if err != nil || v.Value.String() != Float(1).String() || v.Version != 1 {
			t.Fatalf("x = %v, %v; want version 1, value 1", v, err)
		}
	})
	t.Run("a tenant cannot use unowned sessions", func(t *testing.T) {
		if _, err := e.GetSession(acme, "unowned"); !errors.Is(err, ErrPermissionDenied) {
			t.Fatalf("err = %v, want ErrPermissionDenied", err)
		}
	})
	t.Run("list shows own sessions only", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			ctx  context.Context
			want []string
		}{
			{"acme", acme, []string{"a"}},
			{"globex", globex, []string{"g"}},
			{"admin", admin, []string{"a", "g", "unowned"}},
			{"nobody's", WithTenant(admin, "initech"), nil},
		} {
			infos, err := e.ListSessions(tc.ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, in := range infos {
				ids = append(ids, in.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("%s: sessions %v, want %v", tc.name, ids, tc.want)
			}
		}
	})
	t.Run("ownership dies with the session", func(t *testing.T) {
		if _, err := e.CloseSession(acme, "a"); err != nil {
			t.Fatal(err)
		}
		info, created, err := e.CreateSession(globex, CreateSessionRequest{ID: "a"})
		if err != nil || !created || info.Owner != "globex" {
			t.Fatalf("re-create as globex: %+v %v %v", info, created, err)
		}
		if _, err := e.GetSession(acme, "a"); !errors.Is(err, ErrPermissionDenied) {
			t.Fatalf("old owner: err = %v, want ErrPermissionDenied", err)
		}
	})
}
