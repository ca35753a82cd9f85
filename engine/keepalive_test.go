package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// listed reports whether session id is live: ListSessions expires what is
// due first, and does not count as use.
func listed(t *testing.T, e *Engine, id string) (SessionInfo, bool) {
	t.Helper()
	list, err := e.ListSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == id {
			return s, true
		}
	}
	return SessionInfo{}, false
}

func newKeepAliveEngine(t *testing.T, clock *fakeClock, expireWatched bool) *Engine {
	t.Helper()
	clock.ns.Store(1_700_000_000_000_000_000)
	e := New(Config{Now: clock.now, SessionTTL: 10 * time.Second, ExpireWatchedSessions: expireWatched})
	t.Cleanup(func() { _ = e.Close() })
	if _, _, err := e.CreateSession(context.Background(), CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	return e
}

// A watched session outlives its TTL many times over, whether the expiry
// timer or a command finds it due; once its last watch ends it expires
// one TTL later.
func TestWatchKeepsSessionAlive(t *testing.T) {
	clock := &fakeClock{}
	e := newKeepAliveEngine(t, clock, false)
	ctx := context.Background()
	a, err := e.Watch(ctx, WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Watch(ctx, WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		clock.advance(25 * time.Second)
		info, ok := listed(t, e, "s")
		if !ok {
			t.Fatal("a watched session expired")
		}
		if !info.ExpiresAt.After(clock.now()) {
			t.Fatalf("a watched session's deadline %v is not after now %v", info.ExpiresAt, clock.now())
		}
	}
	clock.advance(25 * time.Second)
	if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeFloat, Value: Float(1)}); err != nil {
		t.Fatalf("a command on a watched session past its deadline: %v", err)
	}

	a.Close()
	clock.advance(25 * time.Second)
	if _, ok := listed(t, e, "s"); !ok {
		t.Fatal("the session expired while one of its two watches was open")
	}
	clock.advance(5 * time.Second) // the last push was at the list above
	b.Close()
	ended := clock.now()
	clock.advance(10*time.Second - time.Nanosecond)
	if _, ok := listed(t, e, "s"); !ok {
		t.Fatal("the session expired before a TTL had passed since its last watch ended")
	}
	clock.advance(time.Nanosecond)
	if info, ok := listed(t, e, "s"); ok {
		t.Fatalf("the session outlived its last watch by a TTL: %+v (watch ended at %v)", info, ended)
	}
	if a.Err() != ErrUnsubscribed || b.Err() != ErrUnsubscribed {
		t.Fatalf("watches ended with %v and %v", a.Err(), b.Err())
	}
}

// With ExpireWatchedSessions a watched session expires by its TTL, and
// its watch ends with EventSessionClosed as for any removal.
func TestExpireWatchedSessions(t *testing.T) {
	clock := &fakeClock{}
	e := newKeepAliveEngine(t, clock, true)
	sub, err := e.Watch(context.Background(), WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(10 * time.Second)
	if _, ok := listed(t, e, "s"); ok {
		t.Fatal("a watched session outlived its TTL with ExpireWatchedSessions")
	}
	if ev := nextEvent(t, sub); ev.Type != EventSessionClosed {
		t.Fatalf("last event %v, want session_closed", ev.Type)
	}
	<-sub.Done()
	if !errors.Is(sub.Err(), ErrSessionClosed) {
		t.Fatalf("watch ended with %v, want ErrSessionClosed", sub.Err())
	}
}

// A watch cut off for reading slowly ends like a closed one: the TTL
// starts over from then.
func TestSlowWatchEndRearmsTTL(t *testing.T) {
	clock := &fakeClock{}
	e := newKeepAliveEngine(t, clock, false)
	ctx := context.Background()
	if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeFloat, Value: Float(0)}); err != nil {
		t.Fatal(err)
	}
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(30 * time.Second)
	for i := range 3 {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Float(float64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	<-sub.Done()
	if !errors.Is(sub.Err(), ErrSlowConsumer) {
		t.Fatalf("watch ended with %v", sub.Err())
	}
	clock.advance(10*time.Second - time.Nanosecond)
	if _, ok := listed(t, e, "s"); !ok {
		t.Fatal("expired before a TTL since its watch was cut off")
	}
	clock.advance(time.Nanosecond)
	if _, ok := listed(t, e, "s"); ok {
		t.Fatal("outlived its cut-off watch by a TTL")
	}
}

// The keep-alive against an independent model: random watches opened and
// closed, uses, and clock moves over a few sessions; after each step the
// live sessions are exactly those the model says: a session lives while
// watched, else until a TTL after its last use or its last watch's end,
// whichever was later.
func TestWatchKeepAliveMatchesModel(t *testing.T) {
	seed := rand.Uint64()
	if s, err := strconv.ParseUint(os.Getenv("VARWATCH_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (VARWATCH_SEED to repeat)", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for _, expireWatched := range []bool{false, true} {
		clock := &fakeClock{}
		clock.ns.Store(1_700_000_000_000_000_000)
		const ttl = 10 * time.Second
		e := New(Config{Now: clock.now, SessionTTL: ttl, ExpireWatchedSessions: expireWatched})
		ctx := context.Background()
		type model struct {
			live    bool
			lastUse time.Time
			subs    []*Subscription
		}
		ids := []string{"a", "b", "c", "d"}
		m := map[string]*model{}
		for _, id := range ids {
			m[id] = &model{}
		}
		for step := range 3000 {
			id := ids[r.IntN(len(ids))]
			s := m[id]
			now := clock.now()
			switch op := r.IntN(10); {
			case op < 2: // create (or use)
				if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: id}); err != nil {
					t.Fatal(err)
				}
				if !s.live {
					s.live, s.subs = true, nil
				}
				s.lastUse = now
			case op < 4: // watch
				sub, err := e.Watch(ctx, WatchRequest{Session: id})
				if s.live != (err == nil) {
					t.Fatalf("step %d: watch %s: %v, model live %v", step, id, err, s.live)
				}
				if err == nil {
					s.subs = append(s.subs, sub)
					s.lastUse = now
				}
			case op < 6: // end a watch
				if len(s.subs) == 0 {
					continue
				}
				i := r.IntN(len(s.subs))
				s.subs[i].Close()
				s.subs = append(s.subs[:i], s.subs[i+1:]...)
				if s.live && len(s.subs) == 0 && !expireWatched {
					s.lastUse = now
				}
			case op < 7: // use
				_, err := e.GetSession(ctx, id)
				if s.live != (err == nil) {
					t.Fatalf("step %d: get %s: %v, model live %v", step, id, err, s.live)
				}
				if err == nil {
					s.lastUse = now
				}
			default: // time passes
				clock.advance(time.Duration(r.Int64N(int64(2 * ttl))))
			}
			now = clock.now()
			for _, id := range ids {
				s := m[id]
				if s.live && !(len(s.subs) > 0 && !expireWatched) && !now.Before(s.lastUse.Add(ttl)) {
					s.live, s.subs = false, nil // its watches end with it
				}
			}
			for _, id := range ids {
				if _, ok := listed(t, e, id); ok != m[id].live {
					t.Fatalf("step %d (expireWatched %v): session %s live %v, model %v", step, expireWatched, id, ok, m[id].live)
				}
			}
		}
		_ = e.Close()
	}
}

// What the keep-alive decides is journaled as touches: a replay of the
// journal alone gives the live deadlines, while watched (exactly: a push
// is always journaled) and after the watch ended (within the slack of an
// unjournaled re-arm), and nothing the live engine kept alive is lost at
// a restart.
func TestKeepAliveIsJournaled(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{}
	live, err := Open(journalConfig(clock, mj)) // TTL 8s
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	ctx := context.Background()
	for _, id := range []string{"watched", "idle"} {
		if _, _, err := live.CreateSession(ctx, CreateSessionRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := live.Register(ctx, RegisterRequest{Session: "watched", Name: "x", Type: TypeFloat, Value: Float(0)}); err != nil {
		t.Fatal(err)
	}
	sub, err := live.Watch(ctx, WatchRequest{Session: "watched"})
	if err != nil {
		t.Fatal(err)
	}
	replayNow := func(what string, exact bool) {
		t.Helper()
		var want stateDump
		inLoop(t, live, func(st *state) { st.expireDue(clock.now()); want = dumpState(st) })
		replayed, err := Open(journalConfig(clock, mj.clone()))
		if err != nil {
			t.Fatal(err)
		}
		defer replayed.Close()
		var got stateDump
		inLoop(t, replayed, func(st *state) { got = dumpState(st) })
		if _, ok := got.Sessions["watched"]; !ok {
			t.Fatalf("%s: the watched session is gone after a replay", what)
		}
		if w, g := want.Sessions["watched"], got.Sessions["watched"]; exact && (w.Expires != g.Expires || w.LastUsed != g.LastUsed) {
			t.Fatalf("%s: replayed deadline %v, live %v", what, time.Unix(0, g.Expires), time.Unix(0, w.Expires))
		}
		compareDumps(t, want, got, clock.now())
	}
	for i := range 12 {
		clock.advance(3 * time.Second)
		if _, ok := listed(t, live, "watched"); !ok {
			t.Fatalf("round %d: the watched session expired", i)
		}
		if i%5 == 4 {
			if _, err := live.Set(ctx, SetRequest{Session: "watched", Variable: "x", Value: Float(float64(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, ok := listed(t, live, "idle"); ok {
		t.Fatal("the idle session outlived its TTL")
	}
	// The last event was a push (a list found the session due, with no
	// write since): replayed exactly.
	clock.advance(8 * time.Second)
	listed(t, live, "watched")
	replayNow("while watched", true)

	clock.advance(2 * time.Second)
	sub.Close()
	listed(t, live, "watched") // the unsubscribe has applied
	replayNow("after the watch ended", false)
	clock.advance(8 * time.Second)
	if _, ok := listed(t, live, "watched"); ok {
		t.Fatal("the session outlived its last watch by a TTL")
	}
}
