package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// hostileNames fills session "h" with n variables of 250-byte names and
// returns a 1 KiB glob that each of them fails only after about 10,000
// class matches: "*" then 200 "[a-z]" then "b", against names of letters
// that never end in b.
func hostileNames(t *testing.T, e *Engine, n int) string {
	t.Helper()
	ctx := context.Background()
	mustCreate(t, e, "h")
	for i := range n {
		suffix := []byte{'c' + byte(i%24), 'c' + byte(i/24%24), 'c' + byte(i/576%24)}
		name := strings.Repeat("a", 247) + string(suffix)
		if _, err := e.Register(ctx, RegisterRequest{Session: "h", Name: name, Type: TypeInteger, Value: Integer(0)}); err != nil {
			t.Fatal(err)
		}
	}
	return "*" + strings.Repeat("[a-z]", 200) + "b"
}

// hostileNameCount keeps a hostile scan near 0.3 s: enough to be seen,
// on the loop, by every set of the victim.
func hostileNameCount() int {
	if raceEnabled {
		return 300
	}
	return 2000
}

// TestCostlyGlobDoesNotStallTheLoop: a worst-case glob over a full
// session's names, by List and by a pattern watch, is matched in the
// caller's goroutine. On the loop (before), each call stalled every other
// session for its whole scan (1.1 s for 10,000 names).
func TestCostlyGlobDoesNotStallTheLoop(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		hostile func(e *Engine, glob string) error
	}{
		{"list", func(e *Engine, glob string) error {
			res, err := e.List(ctx, "h", glob)
			if err == nil && len(res.Variables) != 0 {
				err = fmt.Errorf("%d variables match, want none", len(res.Variables))
			}
			return err
		}},
		{"pattern watch", func(e *Engine, glob string) error {
			sub, err := e.Watch(ctx, WatchRequest{Session: "h", Pattern: glob, IncludeInitialValues: true})
			if err != nil {
				return err
			}
			defer sub.Close()
			if n := sub.Pending(); n != 1 { // initial_values_complete alone
				return fmt.Errorf("%d events waiting, want 1", n)
			}
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(Config{})
			defer e.Close()
			glob := hostileNames(t, e, hostileNameCount())
			ratio := stallRatio(t, e, func() error { return tc.hostile(e, glob) })
			if ratio > maxStallRatio {
				t.Fatalf("another session's set is %.0f times slower while the glob runs (limit %d)", ratio, maxStallRatio)
			}
		})
	}
}

// TestRegistrationUnderCostlyWatchesDoesNotStallTheLoop: each
// registration is routed to the session's pattern watches; with many
// watches of a worst-case glob, its caller matches them, not the loop.
// Before, 200 such watches made every registration hold the loop for
// 200 matches (about 30 ms).
func TestRegistrationUnderCostlyWatchesDoesNotStallTheLoop(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	glob := hostileNames(t, e, 1)
	watches := 200
	if raceEnabled {
		watches = 30
	}
	for range watches {
		sub, err := e.Watch(ctx, WatchRequest{Session: "h", Pattern: glob})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
	}
	n := 0
	ratio := stallRatio(t, e, func() error {
		n++
		name := fmt.Sprintf("%s%06d", strings.Repeat("a", 240), n)
		_, err := e.Register(ctx, RegisterRequest{Session: "h", Name: name, Type: TypeInteger, Value: Integer(0)})
		return err
	})
	if ratio > maxStallRatio {
		t.Fatalf("another session's set is %.0f times slower while registrations are routed (limit %d)", ratio, maxStallRatio)
	}
}

// TestPatternWatchSeesChangesBetweenItsTrips: variables registered and
// deleted between the trip that reads the names and the one that starts
// the watch are matched (or dropped) by the loop, in name order.
func TestPatternWatchSeesChangesBetweenItsTrips(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	for _, name := range []string{"a1", "a3", "b1", "a5"} {
		mustRegister(t, e, "s", name, Integer(0))
	}
	g, err := CompileGlob("a*")
	if err != nil {
		t.Fatal(err)
	}
	names := &namesCmd{session: "s", now: time.Now()}
	res, err := run(ctx, e, names, &names.reply)
	if err != nil {
		t.Fatal(err)
	}
	pre := matchNames(g, res)
	// Between the trips: one match goes, two come (one sorting first).
	if _, err := e.Delete(ctx, "s", "a3"); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, e, "s", "a4", Integer(0))
	mustRegister(t, e, "s", "a0", Integer(0))
	mustRegister(t, e, "s", "b2", Integer(0))

	c := &watchCmd{req: WatchRequest{Session: "s", Pattern: "a*", IncludeInitialValues: true}, pre: pre, now: time.Now(), engine: e}
	sub, err := run(ctx, e, c, &c.reply)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var got []string
	for ev := nextEvent(t, sub); ev.Type == EventInitialValue; ev = nextEvent(t, sub) {
		got = append(got, ev.Variable.Name)
	}
	if want := []string{"a0", "a1", "a4", "a5"}; !slices.Equal(got, want) {
		t.Fatalf("initial values %v, want %v", got, want)
	}
}

// TestRegistrationRoutes: a registration routed by its caller reaches
// exactly the pattern watches its name matches, a watch started between
// the two trips included (the loop matches that one itself).
func TestRegistrationRoutes(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	long := strings.Repeat("*", 600) // costly to route on the loop: 600 x 120 steps
	watch := func(pattern string) *Subscription {
		t.Helper()
		sub, err := e.Watch(ctx, WatchRequest{Session: "s", Pattern: pattern})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Close)
		return sub
	}
	subA, subB := watch("a"+long), watch("b"+long)
	nameA, nameB := "a"+strings.Repeat("x", 119), "b"+strings.Repeat("x", 119)
	inLoop(t, e, func(st *state) {
		if cost := st.sessions["s"].routeCost(nameA); cost <= maxLoopGlobSteps {
			t.Fatalf("route cost %d: the test needs more than %d", cost, maxLoopGlobSteps)
		}
	})

	// Through Register: two trips, each watch gets what it matches.
	mustRegister(t, e, "s", nameA, Integer(0))
	mustRegister(t, e, "s", nameB, Integer(0))
	for _, w := range []struct {
		sub  *Subscription
		want string
	}{{subA, nameA}, {subB, nameB}} {
		if ev := nextEvent(t, w.sub); ev.Type != EventVariableRegistered || ev.Variable.Name != w.want {
			t.Fatalf("got %v %v, want the registration of %s", ev.Type, ev.Variable, w.want)
		}
		if n := w.sub.Pending(); n != 0 {
			t.Fatalf("%d more events, want none", n)
		}
	}

	// By hand: routed for A and B, then C starts before the second trip.
	nameC := "a" + strings.Repeat("y", 119)
	req := RegisterRequest{Session: "s", Name: nameC, Type: TypeInteger, Value: Integer(0)}
	cfg := Config{}.withDefaults()
	first := &registerCmd{req: req, pre: checkRegistration(req, &cfg), now: time.Now()}
	if _, err := run(ctx, e, first, &first.reply); err != nil || len(first.route) != 2 {
		t.Fatalf("first trip: %v, route %d watches (want 2)", err, len(first.route))
	}
	subC := watch("a" + long)
	second := &registerCmd{req: req, pre: first.pre, routes: routeName(nameC, first.route), now: time.Now()}
	if _, err := run(ctx, e, second, &second.reply); err != nil || second.route != nil {
		t.Fatalf("second trip: %v, route %v", err, second.route)
	}
	for _, sub := range []*Subscription{subA, subC} {
		if ev := nextEvent(t, sub); ev.Variable.Name != nameC {
			t.Fatalf("got %v, want the registration of %s", ev.Variable, nameC)
		}
	}
	if n := subB.Pending(); n != 0 {
		t.Fatalf("watch b got %d events of a name it does not match", n)
	}
}
