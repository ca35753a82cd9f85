package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A session deleted and created again under the same id is another
// history: its revisions start over, so a watch that names the old
// incarnation must be refused, never replayed the new session's changes
// as if they continued the old one.
func TestIncarnationChangesWhenASessionIsCreatedAgain(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()

	first, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Incarnation) != 16 {
		t.Fatalf("incarnation %q: want 16 hex digits", first.Incarnation)
	}
	again, created, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"})
	if err != nil || created || again.Incarnation != first.Incarnation {
		t.Fatalf("existing session: created=%v incarnation %q, err %v; want the same %q", created, again.Incarnation, err, first.Incarnation)
	}
	mustRegister(t, e, "s", "x", Float(1))
	mustSet(t, e, "s", "x", Float(2))

	if _, err := e.CloseSession(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	second, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Incarnation == first.Incarnation || second.Incarnation == "" {
		t.Fatalf("recreated session has incarnation %q, first had %q: want a new one", second.Incarnation, first.Incarnation)
	}
	mustRegister(t, e, "s", "x", Float(10))
	mustSet(t, e, "s", "x", Float(11))
	mustSet(t, e, "s", "x", Float(12))

	// The old incarnation at a revision the new session has passed: the
	// very case that would silently hand over another history.
	for _, req := range []WatchRequest{
		{Session: "s", Resume: true, StartRevision: 1, Incarnation: first.Incarnation},
		{Session: "s", Resume: true, StartRevision: 100, Incarnation: first.Incarnation},
		{Session: "s", IncludeInitialValues: true, Incarnation: first.Incarnation},
	} {
		sub, err := e.Watch(ctx, req)
		var ie *IncarnationError
		if !errors.As(err, &ie) || !errors.Is(err, ErrIncarnationChanged) {
			t.Fatalf("watch %+v: got %v, %v; want an *IncarnationError", req, sub, err)
		}
		if ie.Current != second.Incarnation || ie.Requested != first.Incarnation || ie.Session != "s" {
			t.Fatalf("error %+v: want current %q, requested %q", ie, second.Incarnation, first.Incarnation)
		}
	}
	inLoop(t, e, func(st *state) {
		if n := len(st.sessions["s"].subs); n != 0 {
			t.Errorf("refused watches left %d subscriptions", n)
		}
	})

	// The right incarnation resumes as usual, and the events that say
	// where a stream stands carry it.
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Resume: true, StartRevision: 1, Incarnation: second.Incarnation})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if sub.Incarnation() != second.Incarnation {
		t.Fatalf("Subscription.Incarnation = %q, want %q", sub.Incarnation(), second.Incarnation)
	}
	if ev := nextEvent(t, sub); ev.Revision != 2 || ev.Type != EventValueChange {
		t.Fatalf("first replayed event %v at %d, want the change at revision 2", ev.Type, ev.Revision)
	}
	if hb := sub.Heartbeat(time.Now()); hb.Incarnation != second.Incarnation {
		t.Fatalf("heartbeat incarnation %q, want %q", hb.Incarnation, second.Incarnation)
	}
	snap, err := e.Watch(ctx, WatchRequest{Session: "s", IncludeInitialValues: true})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	nextEvent(t, snap) // x
	if ev := nextEvent(t, snap); ev.Type != EventInitialValuesComplete || ev.Incarnation != second.Incarnation {
		t.Fatalf("got %v with incarnation %q, want initial_values_complete with %q", ev.Type, ev.Incarnation, second.Incarnation)
	}
	if _, err := e.CloseSession(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	for {
		ev := nextEvent(t, snap)
		if ev.Type == EventSessionClosed {
			if ev.Incarnation != second.Incarnation {
				t.Fatalf("session_closed incarnation %q, want %q", ev.Incarnation, second.Incarnation)
			}
			break
		}
	}
}

// An incarnation given by the caller is kept: a replayed log record
// recreates the session exactly.
func TestIncarnationFromTheRequestIsKept(t *testing.T) {
	e := New(Config{})
	defer e.Close()
	info, _, err := e.CreateSession(context.Background(), CreateSessionRequest{ID: "s", Incarnation: "00112233aabbccdd"})
	if err != nil || info.Incarnation != "00112233aabbccdd" {
		t.Fatalf("got %q, %v", info.Incarnation, err)
	}
}

func mustSet(t *testing.T, e *Engine, session, name string, v Value) SetResult {
	t.Helper()
	res, err := e.Set(context.Background(), SetRequest{Session: session, Variable: name, Value: v})
	if err != nil {
		t.Fatal(err)
	}
	return res
}
