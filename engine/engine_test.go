package engine

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// inLoop runs f on the loop goroutine, so tests can inspect internals
// without racing the loop.
type inspectCmd struct {
	reply[struct{}]
	f func(*state)
}

func (c *inspectCmd) apply(st *state) { c.f(st) }

func inLoop(t *testing.T, e *Engine, f func(*state)) {
	t.Helper()
	c := &inspectCmd{f: f}
	if _, err := run(context.Background(), e, c, &c.reply); err != nil {
		t.Fatal(err)
	}
}

// nextEvent waits up to a second for the subscription's next event.
func nextEvent(t *testing.T, sub *Subscription) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("waiting for an event: %v", err)
	}
	return ev
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

func TestBadInputLeavesStateUnchanged(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "f", Float(1))
	reg := func(name string, typ Type, v Value, c Constraints) error {
		_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: name, Type: typ, Value: v, Constraints: c})
		return err
	}
	for _, spec := range []struct {
		name string
		typ  Type
		v    Value
		c    Constraints
	}{
		{"fmin", TypeFloat, Float(5), Constraints{Min: ptr(0.0), Max: ptr(10.0)}},
		{"imin", TypeInteger, Integer(5), Constraints{MinInteger: ptr(int64(0)), MaxInteger: ptr(int64(10))}},
		{"str", TypeString, String("abc"), Constraints{MinLength: ptr(int64(2)), MaxLength: ptr(int64(4)), Pattern: "[a-z]+"}},
		{"mode", TypeChoice, Choice("a"), Constraints{Choices: []string{"a", "b"}}},
		{"mod", TypeModule, Module("torch"), Constraints{AllowedModules: []string{"torch", "jax"}}},
		{"emb", TypeEmbedding, Embedding([]float32{1, 2, 3}), Constraints{Dimensions: 3}},
		{"ten", TypeTensor, TensorOf(Tensor{Shape: []int64{2, 2}, DType: "uint8", Data: []byte{1, 2, 3, 4}}), Constraints{Shape: []int64{-1, 2}}},
	} {
		if err := reg(spec.name, spec.typ, spec.v, spec.c); err != nil {
			t.Fatalf("register %s: %v", spec.name, err)
		}
	}
	set := func(name string, v Value) error {
		_, err := e.Set(ctx, SetRequest{Session: "s", Variable: name, Value: v})
		return err
	}

	cases := []struct {
		name string
		do   func() error
		want error
		msg  string
	}{
		{"unknown session", func() error { _, err := e.Get(ctx, "nope", "f"); return err }, ErrSessionNotFound, `"nope"`},
		{"empty session id", func() error { _, err := e.Get(ctx, "", "f"); return err }, ErrInvalidArgument, "empty"},
		{"unknown variable", func() error { return set("nope", Float(1)) }, ErrVariableNotFound, `"nope"`},
		{"unknown variable id", func() error { return set("99", Float(1)) }, ErrVariableNotFound, `"99"`},
		{"duplicate name", func() error { return reg("f", TypeFloat, Float(2), Constraints{}) }, ErrAlreadyExists, `"f"`},
		{"wrong value type", func() error { return set("f", Integer(2)) }, ErrInvalidArgument, "wrong value type"},
		{"missing value", func() error { return set("f", Value{}) }, ErrInvalidArgument, "required"},
		{"below min", func() error { return set("fmin", Float(-1)) }, ErrInvalidArgument, "min 0"},
		{"above max", func() error { return set("fmin", Float(11)) }, ErrInvalidArgument, "max 10"},
		{"below min_integer", func() error { return set("imin", Integer(-1)) }, ErrInvalidArgument, "min_integer"},
		{"above max_integer", func() error { return set("imin", Integer(11)) }, ErrInvalidArgument, "max_integer"},
		{"below min_length", func() error { return set("str", String("a")) }, ErrInvalidArgument, "min_length"},
		{"above max_length", func() error { return set("str", String("abcde")) }, ErrInvalidArgument, "max_length"},
		{"pattern", func() error { return set("str", String("AB")) }, ErrInvalidArgument, "pattern"},
		{"choices", func() error { return set("mode", Choice("c")) }, ErrInvalidArgument, "choices"},
		{"allowed_modules", func() error { return set("mod", Module("numpy")) }, ErrInvalidArgument, "allowed_modules"},
		{"dimensions", func() error { return set("emb", Embedding([]float32{1})) }, ErrInvalidArgument, "dimensions"},
		{"shape", func() error {
			return set("ten", TensorOf(Tensor{Shape: []int64{1, 4}, DType: "uint8", Data: []byte{1, 2, 3, 4}}))
		}, ErrInvalidArgument, "shape"},
		{"tensor data length", func() error {
			return set("ten", TensorOf(Tensor{Shape: []int64{2, 2}, DType: "float32", Data: []byte{1}}))
		}, ErrInvalidArgument, "needs 16 bytes"},
		{"tensor dtype", func() error {
			return set("ten", TensorOf(Tensor{Shape: []int64{2, 2}, DType: "complex64", Data: []byte{1, 2, 3, 4}}))
		}, ErrInvalidArgument, "dtype"},
		{"constraint not fitting the type", func() error {
			return reg("x", TypeString, String("a"), Constraints{Min: ptr(1.0)})
		}, ErrInvalidArgument, "min does not apply to string"},
		{"choice without choices", func() error { return reg("x", TypeChoice, Choice("a"), Constraints{}) }, ErrInvalidArgument, "choices"},
		{"bad constraint pattern", func() error {
			return reg("x", TypeString, String("a"), Constraints{Pattern: "("})
		}, ErrInvalidArgument, "pattern"},
		{"min above max", func() error {
			return reg("x", TypeFloat, Float(1), Constraints{Min: ptr(2.0), Max: ptr(1.0)})
		}, ErrInvalidArgument, "min <= max"},
		{"initial value violates", func() error {
			return reg("x", TypeFloat, Float(-5), Constraints{Min: ptr(0.0)})
		}, ErrInvalidArgument, "min 0"},
		{"unknown type", func() error { return reg("x", Type(42), Float(1), Constraints{}) }, ErrInvalidArgument, "type"},
		{"empty name", func() error { return reg("", TypeFloat, Float(1), Constraints{}) }, ErrInvalidArgument, "empty"},
		{"oversized name", func() error { return reg(strings.Repeat("n", 257), TypeFloat, Float(1), Constraints{}) }, ErrInvalidArgument, "257 bytes"},
		{"name like an id", func() error { return reg("7up", TypeFloat, Float(1), Constraints{}) }, ErrInvalidArgument, "start with a letter"},
		{"name with glob syntax", func() error { return reg("a*b", TypeFloat, Float(1), Constraints{}) }, ErrInvalidArgument, "allowed are"},
		{"bad glob", func() error { _, err := e.List(ctx, "s", "a[b"); return err }, ErrInvalidArgument, "unterminated"},
		{"stale expected_version", func() error {
			_, err := e.Set(ctx, SetRequest{Session: "s", Variable: "f", Value: Float(3), ExpectedVersion: 7, HasExpectedVersion: true})
			return err
		}, ErrVersionConflict, "current version is 1"},
		{"atomic set with one bad item", func() error {
			_, err := e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: []SetRequest{
				{Variable: "f", Value: Float(9)}, {Variable: "fmin", Value: Float(99)},
			}})
			return err
		}, ErrInvalidArgument, `update 1 ("fmin")`},
		{"atomic set of one variable twice", func() error {
			_, err := e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: []SetRequest{
				{Variable: "f", Value: Float(9)}, {Variable: "1", Value: Float(8)},
			}})
			return err
		}, ErrInvalidArgument, "twice"},
		{"watch unknown variable", func() error {
			_, err := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"f", "ghost"}})
			return err
		}, ErrVariableNotFound, `"ghost"`},
		{"bad session id", func() error {
			_, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "has space"})
			return err
		}, ErrInvalidArgument, "allowed are"},
	}
	before := snapshotState(t, e, "s")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
			if after := snapshotState(t, e, "s"); after != before {
				t.Errorf("state changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// snapshotState renders a session's variables and revision for comparison.
func snapshotState(t *testing.T, e *Engine, session string) string {
	t.Helper()
	res, err := e.List(context.Background(), session, "")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, v := range res.Variables {
		b.WriteString(v.ID + ":" + v.Name + "=" + v.Value.String() + " ")
	}
	sessions, _ := e.ListSessions(context.Background())
	return b.String() + " rev=" + strconv.FormatInt(res.Revision, 10) + " sessions=" + strconv.Itoa(len(sessions))
}

func TestVersionsAndRevisions(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	a := mustRegister(t, e, "s", "a", Integer(0))
	b := mustRegister(t, e, "s", "b", Integer(0))
	if a.ID != "1" || b.ID != "2" || a.CreateRevision != 1 || b.CreateRevision != 2 || a.Version != 1 {
		t.Fatalf("registration: a=%+v b=%+v", a, b)
	}
	res, err := e.Set(ctx, SetRequest{Session: "s", Variable: "a", Value: Integer(5), Metadata: map[string]string{"k": "v"}, Source: "me"})
	if err != nil {
		t.Fatal(err)
	}
	got := res.Variable
	if res.Revision != 3 || got.Version != 2 || got.ModRevision != 3 || got.CreateRevision != 1 || got.Source != "me" || got.Metadata["k"] != "v" {
		t.Fatalf("after set: rev %d %+v", res.Revision, got)
	}
	// By id works as well as by name; other sessions keep their own count.
	if v, err := e.Get(ctx, "s", "1"); err != nil || v.Value.Integer() != 5 {
		t.Fatalf("get by id: %v %v", v, err)
	}
	mustCreate(t, e, "other")
	if r := mustRegister(t, e, "other", "a", Integer(0)); r.CreateRevision != 1 {
		t.Fatalf("per-session revision: %d", r.CreateRevision)
	}
	many, err := e.SetMany(ctx, SetManyRequest{Session: "s", Sets: []SetRequest{
		{Variable: "a", Value: Integer(6)}, {Variable: "ghost", Value: Integer(1)}, {Variable: "b", Value: Integer(7)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if many.Items[0].Revision != 4 || !errors.Is(many.Items[1].Err, ErrVariableNotFound) || many.Items[2].Revision != 5 || many.Revision != 5 {
		t.Fatalf("non-atomic set many: %+v", many)
	}
	gm, err := e.GetMany(ctx, "s", []string{"b", "ghost", "a"})
	if err != nil || len(gm.Found) != 2 || gm.Found[0].Name != "b" || gm.Missing[0] != "ghost" || gm.Revision != 5 {
		t.Fatalf("get many: %+v %v", gm, err)
	}
	if rev, err := e.Delete(ctx, "s", "b"); err != nil || rev != 6 {
		t.Fatalf("delete: %d %v", rev, err)
	}
	if _, err := e.Get(ctx, "s", "b"); !errors.Is(err, ErrVariableNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	info, created, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"})
	if err != nil || created || info.VariableCount != 1 || info.Revision != 6 {
		t.Fatalf("idempotent create: %+v %v %v", info, created, err)
	}
}

func TestSessionExpiryIsExact(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	// The watch that sees the session end would keep it alive by default
	// (keepalive.go).
	e := New(Config{Now: clock, SessionTTL: time.Minute, ExpireWatchedSessions: true})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Float(1))
	sub, err := e.Watch(ctx, WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}

	advance(59 * time.Second)
	if _, err := e.Heartbeat(ctx, "s"); err != nil { // use refreshes the TTL
		t.Fatal(err)
	}
	advance(59 * time.Second)
	if _, err := e.Get(ctx, "s", "x"); err != nil {
		t.Fatalf("refreshed session expired early: %v", err)
	}
	advance(time.Minute) // exactly the TTL since last use: gone at once
	if _, err := e.Get(ctx, "s", "x"); !errors.Is(err, ErrSessionNotFound) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired session: %v", err)
	}
	if ev := nextEvent(t, sub); ev.Type != EventSessionClosed {
		t.Fatalf("watcher got %v, want session_closed", ev.Type)
	}
	if _, err := sub.Next(ctx); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("after session_closed: %v", err)
	}
	if list, _ := e.ListSessions(ctx); len(list) != 0 {
		t.Fatalf("expired session still listed: %+v", list)
	}
}

func TestSessionExpiresWithoutFurtherUse(t *testing.T) {
	// The loop's timer, not a later request, ends the session. The watch
	// that sees it end would keep it alive by default (keepalive.go).
	e := New(Config{ExpireWatchedSessions: true})
	defer e.Close()
	if _, _, err := e.CreateSession(context.Background(), CreateSessionRequest{ID: "short", TTL: 30 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	sub, err := e.Watch(context.Background(), WatchRequest{Session: "short"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session did not expire")
	}
	if ev := nextEvent(t, sub); ev.Type != EventSessionClosed {
		t.Fatalf("got %v", ev.Type)
	}
}

func TestCloseSessionEndsWatchers(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Float(1))
	sub, _ := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"x"}})
	n, err := e.CloseSession(ctx, "s")
	if err != nil || n != 1 {
		t.Fatalf("close: %d %v", n, err)
	}
	if ev := nextEvent(t, sub); ev.Type != EventSessionClosed || ev.Revision != 1 {
		t.Fatalf("got %v@%d", ev.Type, ev.Revision)
	}
	if _, err := e.GetSession(ctx, "s"); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("closed session: %v", err)
	}
}

func TestPatternWatchSeesRegistrationsAndDeletes(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "sensor/a", Float(1))
	mustRegister(t, e, "s", "motor", Float(1))
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Pattern: "sensor/*", IncludeInitialValues: true})
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, e, "s", "sensor/b", Float(2))
	mustRegister(t, e, "s", "other", Float(2))
	if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "sensor/b", Value: Float(3)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Delete(ctx, "s", "sensor/a"); err != nil {
		t.Fatal(err)
	}
	want := []string{"initial_value sensor/a", "initial_values_complete ", "variable_registered sensor/b",
		"value_change sensor/b", "variable_deleted sensor/a"}
	for _, w := range want {
		ev := nextEvent(t, sub)
		name := ""
		if ev.Variable != nil {
			name = ev.Variable.Name
		}
		if got := ev.Type.String() + " " + name; got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
	}
}

func TestSlowConsumerIsCutOffWithoutSlowingOthers(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Integer(0))
	stuck, _ := e.Watch(ctx, WatchRequest{Session: "s", Buffer: 8})
	reader, _ := e.Watch(ctx, WatchRequest{Session: "s"})
	const writes = 100
	for i := 1; i <= writes; i++ {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
			t.Fatalf("write %d blocked or failed: %v", i, err)
		}
	}
	select {
	case <-stuck.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("slow consumer was not cut off")
	}
	if _, err := stuck.Drain(nil); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("stuck: %v", err)
	}
	for i := 1; i <= writes; i++ {
		if ev := nextEvent(t, reader); ev.Variable.Value.Integer() != int64(i) {
			t.Fatalf("reader got %v, want %d", ev.Variable.Value, i)
		}
	}
	waitFor(t, "the cut-off subscription to be unregistered", func() bool {
		n := 0
		inLoop(t, e, func(st *state) { n = len(st.sessions["s"].subs) })
		return n == 1
	})
}

func TestUnsubscribeRemovesTheWatcher(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Integer(0))
	sub, _ := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"x"}, Pattern: "y*"})
	sub.Close()
	sub.Close() // idempotent
	if _, err := sub.Drain(nil); !errors.Is(err, ErrUnsubscribed) {
		t.Fatalf("after close: %v", err)
	}
	waitFor(t, "the watcher to leave every index", func() bool {
		clean := false
		inLoop(t, e, func(st *state) {
			s := st.sessions["s"]
			clean = len(s.subs) == 0 && s.patternSubs.live() == 0 && s.names["x"].watchers.live() == 0
		})
		return clean
	})
}

func TestHeartbeatRevisionCoversUnwatchedChanges(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "watched", Integer(0))
	mustRegister(t, e, "s", "other", Integer(0))
	sub, _ := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"watched"}})
	if got := sub.HeartbeatRevision(); got != 2 {
		t.Fatalf("fresh watch heartbeat revision %d, want 2", got)
	}
	res, _ := e.Set(ctx, SetRequest{Session: "s", Variable: "other", Value: Integer(1)})
	if got := sub.HeartbeatRevision(); got != res.Revision {
		t.Fatalf("heartbeat revision %d, want %d: nothing watched changed", got, res.Revision)
	}
	res, _ = e.Set(ctx, SetRequest{Session: "s", Variable: "watched", Value: Integer(1)})
	if got := sub.HeartbeatRevision(); got >= res.Revision {
		t.Fatalf("heartbeat revision %d claims undelivered revision %d", got, res.Revision)
	}
	nextEvent(t, sub)
	if hb := sub.Heartbeat(time.Now()); hb.Revision != res.Revision || hb.Type != EventHeartbeat {
		t.Fatalf("heartbeat %+v, want revision %d", hb, res.Revision)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	mustCreate(t, e, "s")
	sub, _ := e.Watch(ctx, WatchRequest{Session: "s"})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_ = e.Close()
	if _, err := sub.Drain(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscription after close: %v", err)
	}
	if _, err := e.GetSession(ctx, "s"); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after close: %v", err)
	}
	sub.Close() // must not block on a stopped loop
}

func TestValuesAreImmutable(t *testing.T) {
	emb := []float32{1, 2}
	v := Embedding(emb)
	emb[0] = 99
	out := v.Embedding()
	out[1] = 99
	if got := v.Embedding(); got[0] != 1 || got[1] != 2 {
		t.Fatalf("embedding changed through a caller's slice: %v", got)
	}
}

// After a cut-off the waiting events are dropped, so a heartbeat must not
// claim the session's revision: only what was drained.
func TestHeartbeatRevisionAfterCutOffClaimsOnlyWhatWasDrained(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Integer(0))
	sub, _ := e.Watch(ctx, WatchRequest{Session: "s", Buffer: 2})
	for i := 1; i <= 5; i++ {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	<-sub.Done()
	if got := sub.HeartbeatRevision(); got != sub.SnapshotRevision() {
		t.Fatalf("heartbeat revision %d after a cut-off, want %d (nothing was drained)", got, sub.SnapshotRevision())
	}
}

// TestMemo: a value change watched by several subscriptions shares one
// memo; one watched once gets none, nor does a merged (coalesced) change
// or a change replayed from history, since none of them is the event
// that was published to several.
func TestMemo(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Integer(0))
	mustRegister(t, e, "s", "y", Integer(0))
	plain, _ := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"x", "y"}})
	merging, _ := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"x"}, Coalesce: true})
	for _, set := range []SetRequest{{Variable: "x", Value: Integer(1)}, {Variable: "x", Value: Integer(2)}, {Variable: "y", Value: Integer(1)}} {
		set.Session = "s"
		if _, err := e.Set(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	evs := drainN(t, plain, 3)
	if evs[0].Memo == nil || evs[1].Memo == nil || evs[0].Memo == evs[1].Memo {
		t.Fatalf("x's changes: memos %p, %p; want one each", evs[0].Memo, evs[1].Memo)
	}
	if evs[2].Memo != nil {
		t.Fatal("y, watched once, has a memo")
	}
	if m := drainN(t, merging, 1); m[0].Coalesced != 2 || m[0].Memo != nil {
		t.Fatalf("merged change: coalesced %d, memo %p; want 2 and none", m[0].Coalesced, m[0].Memo)
	}
	replay, err := e.Watch(ctx, WatchRequest{Session: "s", Resume: true, StartRevision: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range drainN(t, replay, 3) {
		if ev.Memo != nil {
			t.Fatalf("replayed revision %d has a memo", ev.Revision)
		}
	}
}

// drainN drains sub until it has n events.
func drainN(t *testing.T, sub *Subscription, n int) []Event {
	t.Helper()
	var out []Event
	deadline := time.After(10 * time.Second)
	for len(out) < n {
		evs, err := sub.Drain(nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
		if len(out) >= n {
			break
		}
		select {
		case <-sub.Ready():
		case <-deadline:
			t.Fatalf("got %d events, want %d", len(out), n)
		}
	}
	return out
}

// TestCutOffIsAtomicForHeartbeats: at the moment a cut-off releases the
// subscription's lock, a consumer must already see it ended. Before, the
// pending events were dropped first and the end recorded after, and a
// heartbeat in between claimed the revisions that had just been dropped.
func TestCutOffIsAtomicForHeartbeats(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var watched *Subscription
	var claims []int64 // HeartbeatRevision seen as each publish unlocks
	testHookPublished = func(s *Subscription) {
		mu.Lock()
		defer mu.Unlock()
		if s == watched {
			claims = append(claims, s.HeartbeatRevision())
		}
	}
	defer func() { testHookPublished = nil }()

	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Integer(0))
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Buffer: 2})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	watched = sub
	mu.Unlock()
	for i := 1; i <= 5; i++ { // one set per cycle; the third overflows
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	<-sub.Done()
	mu.Lock()
	defer mu.Unlock()
	if len(claims) == 0 {
		t.Fatal("the hook never saw the subscription")
	}
	for i, rev := range claims { // nothing was ever drained
		if rev != sub.SnapshotRevision() {
			t.Fatalf("publish %d: heartbeat revision %d, want %d: it claims events the consumer never got", i, rev, sub.SnapshotRevision())
		}
	}
}
