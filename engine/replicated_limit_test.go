package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// limitedLog is a fakeLog that refuses, as cluster.Log does, a message
// larger than max with a *LimitError.
type limitedLog struct {
	*fakeLog
	max int
}

func (l limitedLog) Propose(id string, msg []byte, done func(uint64, error)) {
	if len(msg) > l.max {
		done(0, &LimitError{Limit: "log_max_message", Value: int64(l.max), Detail: "too large"})
		return
	}
	l.fakeLog.Propose(id, msg, done)
}

// A write the log refuses as too large fails with the log's LimitError,
// not as ErrLogUnavailable (which tells the caller it may have applied):
// it did not, and retrying cannot help. Writes after it apply.
func TestReplicatedLogLimit(t *testing.T) {
	ctx := context.Background()
	l := limitedLog{newFakeLog(), 4 << 10}
	e := following(t, l, l.fakeLog)
	sessionWithX(t, e)
	_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "big", Type: TypeString, Value: String(strings.Repeat("v", 8<<10))})
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "log_max_message" || errors.Is(err, ErrUnavailable) {
		t.Fatalf("a write larger than the log takes: %v; want the log's LimitError, not ErrUnavailable", err)
	}
	if _, err := e.Get(ctx, "s", "big"); !errors.Is(err, ErrVariableNotFound) {
		t.Fatalf("the refused variable: %v", err)
	}
	if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(1)}); err != nil {
		t.Fatalf("a write after the refused one: %v", err)
	}
}

// following starts an engine over l, which log feeds; both end with the
// test.
func following(t *testing.T, l ReplicatedLog, log *fakeLog) *Engine {
	e := New(Config{Log: l})
	f := log.follow(e)
	t.Cleanup(func() {
		close(f.stop)
		<-f.exited
		e.Close()
	})
	return e
}

// boundedLog is a limitedLog that says its bound (BoundedLog), as
// cluster.Log does.
type boundedLog struct{ limitedLog }

func (l boundedLog) MaxEntryBytes() int { return l.max }

// Over a log that bounds its entries, writes that each fit are never
// refused because together they do not: a SetBatches call and a
// non-atomic SetMany larger than an entry go in several; a set too large
// alone fails alone in a non-atomic call, and an atomic call too large
// fails as a whole, as limits do on one server.
func TestReplicatedBoundedProposals(t *testing.T) {
	ctx := context.Background()
	l := boundedLog{limitedLog{newFakeLog(), 4 << 10}}
	e := following(t, l, l.fakeLog)
	sessionWithX(t, e)
	value := func(i int) Value { return String(strings.Repeat(string(rune('a'+i%26)), 700)) }
	var names []string
	for i := range 20 {
		name := "v" + string(rune('a'+i))
		names = append(names, name)
		if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: name, Type: TypeString, Value: String("")}); err != nil {
			t.Fatal(err)
		}
	}

	// 20 batches of one 700-byte set: about 14 KiB in all.
	var batches []SetManyRequest
	for i, name := range names {
		batches = append(batches, SetManyRequest{Session: "s", Sets: []SetRequest{{Session: "s", Variable: name, Value: value(i)}}})
	}
	for i, r := range e.SetBatches(ctx, batches) {
		if r.Err != nil || len(r.Items) != 1 || r.Items[0].Err != nil {
			t.Fatalf("batch %d of a SetBatches call larger than an entry: %+v", i, r)
		}
	}
	// One non-atomic SetMany of the same size, and one with a set too
	// large among them.
	var sets []SetRequest
	for i, name := range names {
		sets = append(sets, SetRequest{Session: "s", Variable: name, Value: value(i + 1)})
	}
	res, err := e.SetMany(ctx, SetManyRequest{Session: "s", Sets: sets})
	if err != nil || len(res.Items) != len(sets) {
		t.Fatalf("a non-atomic SetMany larger than an entry: %+v, %v", res, err)
	}
	for i, it := range res.Items {
		if it.Err != nil || it.Variable.Version != 3 {
			t.Fatalf("item %d: %+v", i, it)
		}
	}
	sets[7].Value = String(strings.Repeat("z", 8<<10))
	res, err = e.SetMany(ctx, SetManyRequest{Session: "s", Sets: sets})
	if err != nil || len(res.Items) != len(sets) {
		t.Fatalf("a non-atomic SetMany with one set too large: %+v, %v", res, err)
	}
	for i, it := range res.Items {
		var le *LimitError
		if tooLarge := errors.As(it.Err, &le); tooLarge != (i == 7) || i != 7 && it.Variable.Version != 4 {
			t.Fatalf("item %d: %+v; want only item 7 refused as a limit", i, it)
		}
	}
	if _, err := e.SetMany(ctx, SetManyRequest{Session: "s", Sets: sets, Atomic: true}); !errors.As(err, new(*LimitError)) {
		t.Fatalf("an atomic SetMany too large: %v; want the log's LimitError", err)
	}
	if v, err := e.Get(ctx, "s", "vi"); err != nil || v.Version != 4 {
		t.Fatalf("vi after the refused atomic call: %v, %v", v, err)
	}
}
