package engine

import (
	"context"
	"fmt"
	"testing"
)

// TestCoalescedResumeKeepsTheFirstRevisionApart: a coalescing resume from
// S replays the changes at S+1 unmerged (the client may have had some of
// them and skips those) and merges the rest as usual.
func TestCoalescedResumeKeepsTheFirstRevisionApart(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", Integer(0))
	mustRegister(t, e, "s", "y", Integer(0))
	// Revision 3: x=1 and y=1 in one atomic set; then x=2, x=3, y=2.
	if _, err := e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: []SetRequest{
		{Variable: "x", Value: Integer(1)}, {Variable: "y", Value: Integer(1)}}}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name string
		v    int64
	}{{"x", 2}, {"x", 3}, {"y", 2}} {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: w.name, Value: Integer(w.v)}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		start int64
		want  []string
		total int64 // the changes after start
	}{
		// x=1 and y=1 of revision 3 stand alone; x=2 merges into x=3.
		{2, []string{"x=1@3 n=0", "y=1@3 n=0", "x=3@5 n=2", "y=2@6 n=0"}, 5},
		// x=2 of revision 4 stands alone, so x=3 has nothing to merge.
		{3, []string{"x=2@4 n=0", "x=3@5 n=0", "y=2@6 n=0"}, 3},
		// Past the first revision, merging is as usual.
		{4, []string{"x=3@5 n=0", "y=2@6 n=0"}, 2},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("from %d", tc.start), func(t *testing.T) {
			sub, err := e.Watch(ctx, WatchRequest{Session: "s", Resume: true, StartRevision: tc.start, Coalesce: true})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			evs, err := sub.Drain(nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var total int64
			for _, ev := range evs {
				got = append(got, fmt.Sprintf("%s=%d@%d n=%d", ev.Variable.Name, ev.Variable.Value.Integer(), ev.Revision, ev.Coalesced))
				total += max(ev.Coalesced, 1)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("replay %v, want %v", got, tc.want)
			}
			if total != tc.total {
				t.Fatalf("counts add up to %d, want %d", total, tc.total)
			}
		})
	}
}
