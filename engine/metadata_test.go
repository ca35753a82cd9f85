package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMetadataLimits: each metadata limit refuses with its own name and
// value, changes nothing and counts once.
func TestMetadataLimits(t *testing.T) {
	ctx := context.Background()
	cfg := Config{MaxMetadataEntries: 3, MaxMetadataKeyBytes: 4, MaxMetadataValueBytes: 5,
		MaxMetadataBytes: 20, MaxSessionMetadataBytes: 30}
	set := func(meta map[string]string) func(e *Engine) error {
		return func(e *Engine) error {
			_, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(1), Metadata: meta})
			return err
		}
	}
	// Session "s" has metadata {"s": "12345"} (6 bytes) and x has
	// {"a": "1", "b": "2"} (4 bytes, 2 entries).
	tests := []struct {
		name  string
		limit string
		value int64
		do    func(e *Engine) error
	}{
		{"a set's own entries", LimitMetadataEntries, 3, set(map[string]string{"p": "", "q": "", "r": "", "s": ""})},
		{"merged entries", LimitMetadataEntries, 3, set(map[string]string{"p": "", "q": ""})},
		{"a key", LimitMetadataKeyBytes, 4, set(map[string]string{"abcde": ""})},
		{"a value", LimitMetadataValueBytes, 5, set(map[string]string{"a": "123456"})},
		{"a set's source, bounded like a value", LimitMetadataValueBytes, 5, func(e *Engine) error {
			_, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(1), Source: "123456"})
			return err
		}},
		{"merged bytes", LimitMetadataBytes, 20, func(e *Engine) error {
			if err := set(map[string]string{"a": "12345", "b": "12345"})(e); err != nil { // 12 bytes
				return err
			}
			return set(map[string]string{"cccc": "12345"})(e) // 21
		}},
		{"the session's bytes", LimitSessionMetadataBytes, 30, func(e *Engine) error {
			_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "y", Type: TypeInteger, Value: Integer(0),
				Metadata: map[string]string{"aaaa": "12345", "bbbb": "12345"}}) // 6+4+18 = 28
			if err != nil {
				return err
			}
			return set(map[string]string{"c": "12"})(e) // 31
		}},
		{"a registration", LimitMetadataEntries, 3, func(e *Engine) error {
			_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "y", Type: TypeInteger, Value: Integer(0),
				Metadata: map[string]string{"p": "", "q": "", "r": "", "s": ""}})
			return err
		}},
		{"a session", LimitMetadataValueBytes, 5, func(e *Engine) error {
			_, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "t", Metadata: map[string]string{"a": "123456"}})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(cfg)
			defer e.Close()
			if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s", Metadata: map[string]string{"s": "12345"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeInteger, Value: Integer(0),
				Metadata: map[string]string{"a": "1", "b": "2"}}); err != nil {
				t.Fatal(err)
			}
			err := tc.do(e)
			checkLimit(t, err, tc.limit, tc.value)
			if got := mustStats(t, e).LimitRejections[tc.limit]; got != 1 {
				t.Fatalf("LimitRejections[%s] = %d, want 1", tc.limit, got)
			}
		})
	}
	// Deleting a variable gives its bytes back to the session.
	e := New(cfg)
	defer e.Close()
	mustCreate(t, e, "s")
	for range 3 {
		if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeInteger, Value: Integer(0),
			Metadata: map[string]string{"aaaa": "12345", "bbbb": "12345"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Delete(ctx, "s", "x"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWritesMustFitInOneMessage: with the metadata limits off, a write
// whose update (or answer) would not fit in MaxSendMessageBytes is refused
// before it applies. Before, such a set was acknowledged and every watcher
// cut off, or applied and answered with an error, and the variable could
// no longer be read.
func TestWritesMustFitInOneMessage(t *testing.T) {
	ctx := context.Background()
	const msg = 4 << 20
	cfg := Config{MaxMetadataEntries: -1, MaxMetadataKeyBytes: -1, MaxMetadataValueBytes: -1,
		MaxMetadataBytes: -1, MaxSessionMetadataBytes: -1, MaxSendMessageBytes: msg}
	mib := strings.Repeat("v", 1<<20)
	tests := []struct {
		name  string
		setup func(e *Engine) error
		// refused is refused as a whole (atomic); partial is how many of
		// the sets of a non-atomic call applied, when it is one.
		refused func(e *Engine) (applied int, err error)
	}{
		{"a set with 2.3 MB of metadata: its update carries it twice", nil, func(e *Engine) (int, error) {
			_, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: String("a"), Metadata: bigMeta(23, 100000)})
			return 0, err
		}},
		{"a set whose merged metadata passes the message", func(e *Engine) error {
			_, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: String("a"), Metadata: bigMeta(15, 100000)})
			return err
		}, func(e *Engine) (int, error) {
			meta := bigMeta(30, 100000)
			for i := range 15 {
				delete(meta, fmt.Sprintf("k%06d", i)) // only new keys: merged, 3 MB
			}
			_, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: String("b"), Metadata: meta})
			return 0, err
		}},
		{"a registration with 4 MiB of metadata", nil, func(e *Engine) (int, error) {
			_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "y", Type: TypeInteger, Value: Integer(0), Metadata: bigMeta(42, 100000)})
			return 0, err
		}},
		{"an atomic call whose answer passes the message", nil, func(e *Engine) (int, error) {
			_, err := e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: fourMiB(mib)})
			return 0, err
		}},
		{"a call whose answer passes the message applies what fits", nil, func(e *Engine) (int, error) {
			res, err := e.SetMany(ctx, SetManyRequest{Session: "s", Sets: fourMiB(mib)})
			if err != nil {
				return 0, err
			}
			for i, item := range res.Items[:3] {
				if item.Err != nil {
					return i, item.Err
				}
			}
			return 3, res.Items[3].Err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(cfg)
			defer e.Close()
			mustCreate(t, e, "s")
			mustRegister(t, e, "s", "x", String(""))
			for _, name := range []string{"a", "b", "c", "d"} {
				mustRegister(t, e, "s", name, String(""))
			}
			if tc.setup != nil {
				if err := tc.setup(e); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			sub, err := e.Watch(ctx, WatchRequest{Session: "s"})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			before := varState(t, e, "s", "x") + varState(t, e, "s", "d")
			applied, err := tc.refused(e)
			checkLimit(t, err, LimitSendMessageBytes, msg)
			after := varState(t, e, "s", "x") + varState(t, e, "s", "d")
			if applied > 0 { // the sets that fit moved the session on
				before = strings.ReplaceAll(before, "rev=5", fmt.Sprintf("rev=%d", 5+applied))
			}
			if after != before {
				t.Fatalf("a refused request changed state:\nbefore %s\nafter  %s", before, after)
			}
			// Every update published fits, and the watcher runs on.
			if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: String("after")}); err != nil {
				t.Fatal(err)
			}
			for range applied + 1 {
				ev := nextEvent(t, sub)
				if n := updateWire(ev.Variable, 1<<10, ev.OldValue, ev.Source, statsOf(ev.Metadata)); n > msg {
					t.Fatalf("an update of %d bytes was published", n)
				}
			}
			if sub.Err() != nil {
				t.Fatalf("watcher ended: %v", sub.Err())
			}
		})
	}
}

// fourMiB is four sets of 1 MiB values: their answer holds four
// variables of 1 MiB, past a 4 MiB message.
func fourMiB(mib string) []SetRequest {
	var sets []SetRequest
	for _, name := range []string{"a", "b", "c", "d"} {
		sets = append(sets, SetRequest{Variable: name, Value: String(mib)})
	}
	return sets
}

// TestSubscriptionBytesBound: the byte bound counts exactly what waits; a
// drain gives the room back.
func TestSubscriptionBytesBound(t *testing.T) {
	ctx := context.Background()
	e := New(Config{SubscriptionBytes: 1 << 20})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "x", String(""))
	sub, err := e.Watch(ctx, WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	v := String(strings.Repeat("v", 300<<10))
	set := func() {
		t.Helper()
		if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	// An event holds the new and the old value: 300 KiB for the first
	// set, 600 KiB for each after it.
	set()
	set()
	if evs, err := sub.Drain(nil); len(evs) != 2 || err != nil {
		t.Fatalf("drained %d, %v", len(evs), err)
	}
	set()
	if sub.Err() != nil {
		t.Fatalf("cut off with room left: %v", sub.Err())
	}
	set()
	select {
	case <-sub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not cut off past the byte bound")
	}
	if _, err := sub.Drain(nil); err != ErrSlowConsumer {
		t.Fatalf("drain after the cut-off: %v", err)
	}
}
