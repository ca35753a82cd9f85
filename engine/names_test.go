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
