package engine

import (
	"context"
	"errors"
	"testing"
)

func mustStats(t *testing.T, e *Engine) Stats {
	t.Helper()
	s, err := e.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStatsCount(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	calls := 0
	must := func(err error) {
		t.Helper()
		calls++
		if err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, e, "s")
	mustCreate(t, e, "t")
	mustRegister(t, e, "s", "a", Integer(0))
	mustRegister(t, e, "s", "b", Integer(0))
	mustRegister(t, e, "t", "c", Integer(0))
	calls += 5
	_, err := e.Set(ctx, SetRequest{Session: "s", Variable: "a", Value: Integer(1)})
	must(err)
	_, err = e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: []SetRequest{
		{Variable: "a", Value: Integer(2)}, {Variable: "b", Value: Integer(2)}}})
	must(err)
	_, err = e.Delete(ctx, "s", "b")
	must(err)
	_, err = e.CloseSession(ctx, "t")
	must(err)

	got := mustStats(t, e)
	want := Stats{Sessions: 1, Variables: 1, SessionsCreated: 2, SessionsClosed: 1, Sets: 3,
		Revisions: 3 + 1 + 1 + 1, QueueCapacity: 4096}
	if got.Sessions != want.Sessions || got.Variables != want.Variables || got.SessionsCreated != want.SessionsCreated ||
		got.SessionsClosed != want.SessionsClosed || got.SessionsExpired != 0 || got.Sets != want.Sets ||
		got.Revisions != want.Revisions || got.QueueCapacity != want.QueueCapacity || got.HistoryBytes <= 0 {
		t.Fatalf("Stats() = %+v\nwant      %+v", got, want)
	}
	h := got.BatchSizes
	if len(h.Counts) != len(h.Bounds)+1 || h.Count() == 0 || h.Count() > uint64(calls) || h.Sum != float64(calls) {
		t.Fatalf("batch sizes %+v after %d sequential calls", h, calls)
	}
	e.Close()
	if _, err := e.Stats(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stats after Close: %v", err)
	}
	for name, n := range got.LimitRejections {
		if n != 0 {
			t.Fatalf("limit %s rejected %d", name, n)
		}
	}
}

func TestSubscriptionLagging(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		req  WatchRequest
		sets int // changes of variable a made without draining
		want bool
	}{
		{"drained", WatchRequest{Buffer: 4}, 0, false},
		{"under half the buffer", WatchRequest{Buffer: 4}, 1, false},
		{"half the buffer", WatchRequest{Buffer: 4}, 2, true},
		{"coalescing, nothing merged", WatchRequest{Coalesce: true}, 1, false},
		{"coalescing, merged", WatchRequest{Coalesce: true}, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(Config{})
			defer e.Close()
			mustCreate(t, e, "s")
			mustRegister(t, e, "s", "a", Integer(0))
			tc.req.Session = "s"
			sub, err := e.Watch(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			for i := range tc.sets {
				if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "a", Value: Integer(int64(i + 1))}); err != nil {
					t.Fatal(err)
				}
			}
			if got := sub.Lagging(); got != tc.want {
				t.Fatalf("Lagging() = %v, want %v (pending %d)", got, tc.want, sub.Pending())
			}
			if _, err := sub.Drain(nil); err != nil {
				t.Fatal(err)
			}
			if sub.Lagging() {
				t.Fatal("lagging after a drain")
			}
		})
	}
}
