package filterfeed

import (
	"testing"
	"time"

	"github.com/varwatch/varwatch/engine"
)

// TestMemberCoalesces checks a coalescing member's merge directly: the
// changes that survived the chain merge per variable into the latest, with
// the count, first revision and first old value, in revision order.
func TestMemberCoalesces(t *testing.T) {
	m := newMember(nil, 2, true, nil)
	x := &engine.Variable{ID: "1", Name: "x"}
	y := &engine.Variable{ID: "2", Name: "y"}
	change := func(rev int64, v *engine.Variable, old, cur float64) engine.Event {
		nv := *v
		nv.Value = engine.Float(cur)
		return engine.Event{Type: engine.EventValueChange, Revision: rev, Variable: &nv, OldValue: engine.Float(old)}
	}
	m.push([]engine.Event{change(3, x, 0, 1)}, 3) // before the snapshot: dropped at start
	m.start(4, "", watched{ids: map[string]bool{"1": true, "2": true}}, nil)
	m.push([]engine.Event{change(5, x, 1, 2), change(6, y, 0, 9)}, 6)
	m.push([]engine.Event{change(7, x, 2, 3), change(8, x, 3, 4)}, 8) // 4 events queued, limit 2: merged instead
	if n := m.Pending(); n != 2 {
		t.Fatalf("Pending = %d, want 2", n)
	}
	evs, err := m.Drain(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Revision != 6 || evs[1].Revision != 8 {
		t.Fatalf("drained %+v, want y@6 then x@8", evs)
	}
	if got := evs[1]; got.Coalesced != 3 || got.CoalescedFrom != 5 || got.OldValue.Float() != 1 || got.Variable.Value.Float() != 4 {
		t.Fatalf("merged change %+v, want 3 changes from revision 5, 1 -> 4", got)
	}
	if hb := m.Heartbeat(time.Now()); hb.Revision != 8 {
		t.Fatalf("heartbeat at %d, want 8", hb.Revision)
	}
}

func TestMemberLagging(t *testing.T) {
	ev := func(rev int64) engine.Event {
		return engine.Event{Type: engine.EventValueChange, Revision: rev, Variable: &engine.Variable{ID: "1", Name: "a"}}
	}
	tests := []struct {
		name     string
		coalesce bool
		events   int
		want     bool
	}{
		{"empty", false, 0, false},
		{"under half", false, 1, false},
		{"half", false, 2, true},
		{"coalescing, one waits", true, 1, false},
		{"coalescing, merged", true, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMember(nil, 4, tc.coalesce, nil)
			m.start(0, "", watched{ids: map[string]bool{"1": true}}, nil)
			for i := range tc.events {
				m.push([]engine.Event{ev(int64(i + 1))}, int64(i+1))
			}
			if got := m.Lagging(); got != tc.want {
				t.Fatalf("Lagging() = %v, want %v", got, tc.want)
			}
		})
	}
}
