package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Rows of issue 11, each a request that used to be accepted (or to grow
// memory no bound counted) under the default Config. These tests use only
// what the engine had before, so that they run against it too.

// bigMeta returns n entries of valueBytes-byte values.
func bigMeta(n, valueBytes int) map[string]string {
	m := make(map[string]string, n)
	v := strings.Repeat("m", valueBytes)
	for i := range n {
		m[fmt.Sprintf("k%06d", i)] = v
	}
	return m
}

// varState describes variable x of session s and the session's revision.
func varState(t *testing.T, e *Engine, s, x string) string {
	t.Helper()
	v, err := e.Get(context.Background(), s, x)
	if err != nil {
		t.Fatalf("the variable can no longer be read: %v", err)
	}
	info, err := e.GetSession(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s=%v version=%d mod=%d metadata=%d entries, session rev=%d",
		v.Name, v.Value, v.Version, v.ModRevision, len(v.Metadata), info.Revision)
}

// TestMetadataIsBounded: metadata past the default limits is refused with
// a limit error before anything applies, and the variable stays readable
// at its old version.
func TestMetadataIsBounded(t *testing.T) {
	ctx := context.Background()
	set := func(e *Engine, meta map[string]string) error {
		_, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(1), Metadata: meta})
		return err
	}
	tests := []struct {
		name string
		// setup runs first and must succeed; refused must then be refused.
		setup, refused func(e *Engine) error
	}{
		{"set with 200k entries", nil, func(e *Engine) error { return set(e, bigMeta(200000, 1)) }},
		{"register with 200k entries", nil, func(e *Engine) error {
			_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "y", Type: TypeInteger, Value: Integer(1), Metadata: bigMeta(200000, 1)})
			return err
		}},
		{"session with 200k entries", nil, func(e *Engine) error {
			_, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "t", Metadata: bigMeta(200000, 1)})
			return err
		}},
		{"set with 2.3 MB of metadata", nil, func(e *Engine) error { return set(e, bigMeta(23, 100000)) }},
		{"set whose merged metadata passes the limit", func(e *Engine) error {
			// Each set alone is well under the limits; merged they are not.
			for i := range 7 {
				if err := set(e, map[string]string{fmt.Sprintf("k%d", i): strings.Repeat("m", 9000)}); err != nil {
					return err
				}
			}
			return nil
		}, func(e *Engine) error { return set(e, map[string]string{"k7": strings.Repeat("m", 9000)}) }},
		{"a variable whose metadata passes the session's limit", func(e *Engine) error {
			for i := range 272 { // 4 entries of 15 KiB each: 16 MiB is 272.9 of them
				if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: fmt.Sprintf("v%d", i), Type: TypeInteger,
					Value: Integer(1), Metadata: bigMeta(4, 15<<10)}); err != nil {
					return err
				}
			}
			return nil
		}, func(e *Engine) error {
			_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "last", Type: TypeInteger,
				Value: Integer(1), Metadata: bigMeta(4, 15<<10)})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(Config{})
			defer e.Close()
			mustCreate(t, e, "s")
			mustRegister(t, e, "s", "x", Integer(0))
			if tc.setup != nil {
				if err := tc.setup(e); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			before := varState(t, e, "s", "x")
			if err := tc.refused(e); !errors.Is(err, ErrLimitExceeded) {
				t.Fatalf("got %v, want a limit error", err)
			}
			if after := varState(t, e, "s", "x"); after != before {
				t.Fatalf("a refused request changed state:\nbefore %s\nafter  %s", before, after)
			}
			for _, other := range []string{"t"} {
				if _, err := e.GetSession(ctx, other); !errors.Is(err, ErrSessionNotFound) {
					t.Fatalf("session %s: %v, want not found", other, err)
				}
			}
			if _, err := e.Get(ctx, "s", "y"); !errors.Is(err, ErrVariableNotFound) {
				t.Fatalf("variable y: %v, want not found", err)
			}
		})
	}
}

// TestHistoryCountsVariableMetadata: each set with metadata makes a new
// metadata map for the variable, which the history keeps alive; its
// bytes must count. Before, 100 small sets on a variable with 200k
// entries grew the heap by 1001 MiB and the history's bytes by 0.04 MiB.
func TestHistoryCountsVariableMetadata(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	meta := bigMeta(250, 200) // 51,750 bytes of keys and values
	if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeInteger, Value: Integer(0), Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	before := mustStats(t, e).HistoryBytes
	const sets = 30
	for i := range sets {
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(int64(i)), Metadata: map[string]string{"k000000": "small"}}); err != nil {
			t.Fatal(err)
		}
	}
	grown := mustStats(t, e).HistoryBytes - before
	if held := int64(sets * 250 * 200); grown < held {
		t.Fatalf("history bytes grew by %d for %d sets that each keep a map of %d bytes alive (%d in all)", grown, sets, 250*200, held)
	}
}

// TestSubscriptionBufferBoundsBytes: a subscriber that never reads is cut
// off once the events waiting for it pass the byte bound, however few
// they are. Before, only their count was bounded (65536 by default).
func TestSubscriptionBufferBoundsBytes(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", String(""))
	sub, err := e.Watch(ctx, WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	mib := strings.Repeat("v", 1<<20)
	for i := range 100 { // 100 MiB, past the default 64 MiB
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: String(mib[i:])}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-sub.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("still running with %d events (100 MiB) waiting", sub.Pending())
	}
	if !errors.Is(sub.Err(), ErrSlowConsumer) {
		t.Fatalf("ended with %v, want ErrSlowConsumer", sub.Err())
	}
	if n := sub.Pending(); n != 0 {
		t.Fatalf("%d events still held after the cut-off", n)
	}
}

// TestSetSizesFromTheSlot: what a set's checks and its event count, from
// the sizes its variable's slot keeps, is what the estimates of a whole
// variable give (updateWire, variableWire, eventSizeWith), for values of
// every kind, with and without a source and metadata.
func TestSetSizesFromTheSlot(t *testing.T) {
	st := newState(Config{}.withDefaults())
	now := time.Now()
	if _, _, err := st.createSession(CreateSessionRequest{ID: "s"}, now); err != nil {
		t.Fatal(err)
	}
	vars := []struct {
		name  string
		typ   Type
		value Value
		c     Constraints
		meta  map[string]string
		next  Value
	}{
		{"f", TypeFloat, Float(1), Constraints{Min: new(0.0)}, nil, Float(2)},
		{"i", TypeInteger, Integer(1), Constraints{}, map[string]string{"unit": "m"}, Integer(7)},
		{"str", TypeString, String("a"), Constraints{}, nil, String("a longer string")},
		{"c", TypeChoice, Choice("x"), Constraints{Choices: []string{"x", "yy"}}, bigMeta(3, 10), Choice("yy")},
		{"long_name_of_an_embedding", TypeEmbedding, Embedding([]float32{1}), Constraints{Dimensions: 2}, nil, Embedding([]float32{1, 2})},
		{"t", TypeTensor, TensorOf(Tensor{DType: "float32", Shape: []int64{1}, Data: make([]byte, 4)}), Constraints{},
			nil, TensorOf(Tensor{DType: "float32", Shape: []int64{2, 2}, Data: make([]byte, 16)})},
	}
	for _, tc := range vars {
		if tc.typ == TypeEmbedding {
			tc.value = Embedding([]float32{1, 2})
		}
		req := RegisterRequest{Session: "s", Name: tc.name, Type: tc.typ, Value: tc.value, Constraints: tc.c, Metadata: tc.meta}
		if _, _, err := st.register(req, checkRegistration(req, &st.cfg), nil, now); err != nil {
			t.Fatalf("register %s: %v", tc.name, err)
		}
	}
	s := st.sessions["s"]
	for _, tc := range vars {
		for _, set := range []SetRequest{
			{Variable: tc.name, Value: tc.next},
			{Variable: tc.name, Value: tc.next, Source: "writer-7"},
			{Variable: tc.name, Value: tc.next, Source: "w", Metadata: map[string]string{"step": "12", "k000001": "changed"}},
		} {
			t.Run(fmt.Sprintf("%s/source=%q/metadata=%d", tc.name, set.Source, len(set.Metadata)), func(t *testing.T) {
				sets, pre := precheck(&st.cfg, []SetRequest{set})
				set := sets[0]
				slot := s.names[tc.name]
				old := slot.cur
				budget := maxLoopMergeEntries
				plan, err := st.checkSet(s, &set, pre.at(0), found{}, 0, &budget)
				if err != nil {
					t.Fatal(err)
				}
				next := *old
				next.Value, next.Source, next.meta = set.Value, set.Source, plan.meta
				update, variable := slot.setWire(&set, plan.wire, plan.meta, plan.setMeta)
				if want := updateWire(&next, slot.cc.wire, old.Value, set.Source, plan.setMeta); update != want {
					t.Errorf("update: %d bytes from the slot, %d from updateWire", update, want)
				}
				if want := variableWire(&next, slot.cc.wire); variable != want {
					t.Errorf("variable: %d bytes from the slot, %d from variableWire", variable, want)
				}
				res := st.applySet(s, &plan, &set, st.nextRevision(s), now)
				ev := s.hist.at(s.hist.len() - 1).first.event(res.Revision)
				if ev.Variable != res.Variable || ev.OldValue != old.Value {
					t.Fatalf("the history's last event is not the set's: %+v", ev)
				}
				if want := eventSizeWith(ev, statsOf(set.Metadata)); ev.bytes != want {
					t.Errorf("event: %d bytes from the slot, %d from eventSizeWith", ev.bytes, want)
				}
			})
		}
	}
}
