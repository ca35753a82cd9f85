package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// SetBatches applies its batches in the order given, across commands and
// across a batch that needs checks made off the loop (a pattern
// constraint) in the middle: a watcher sees every value in order, and
// each result holds its own revision.
func TestSetBatchesKeepOrder(t *testing.T) {
	defer func(n int) { pipelineSets = n }(pipelineSets)
	pipelineSets = 7 // many commands
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "n", Integer(0))
	if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "p", Type: TypeString, Value: String("a"),
		Constraints: Constraints{Pattern: "[a-z]+"}}); err != nil {
		t.Fatal(err)
	}
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"n", "p"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	var batches []SetManyRequest
	for i := range 100 {
		b := SetManyRequest{Session: "s", Atomic: i%3 == 0}
		for j := range 1 + i%4 {
			b.Sets = append(b.Sets, SetRequest{Variable: "n", Value: Integer(int64(i*10 + j))})
			if b.Atomic {
				break // one write per variable in an atomic batch
			}
		}
		if i%10 == 5 {
			b.Sets = append(b.Sets, SetRequest{Variable: "p", Value: String("v" + strconv.Itoa(i))}) // fails the pattern: has a digit
		}
		if i%10 == 7 {
			b.Sets = append(b.Sets, SetRequest{Variable: "p", Value: String("ok")})
		}
		batches = append(batches, b)
	}
	results := e.SetBatches(ctx, batches)
	var want []string
	last := int64(0)
	for i, r := range results {
		b := batches[i]
		if b.Atomic && i%10 == 5 {
			if !errors.Is(r.Err, ErrInvalidArgument) {
				t.Fatalf("batch %d: %v, want the pattern's refusal", i, r.Err)
			}
			continue
		}
		if r.Err != nil {
			t.Fatalf("batch %d: %v", i, r.Err)
		}
		for j, it := range r.Items {
			set := b.Sets[j]
			if set.Variable == "p" && i%10 == 5 {
				if !errors.Is(it.Err, ErrInvalidArgument) {
					t.Fatalf("batch %d item %d: %v", i, j, it.Err)
				}
				continue
			}
			if it.Err != nil {
				t.Fatalf("batch %d item %d: %v", i, j, it.Err)
			}
			if it.Revision < last || (!b.Atomic && it.Revision == last) {
				t.Fatalf("batch %d item %d at revision %d after %d", i, j, it.Revision, last)
			}
			last = it.Revision
			want = append(want, set.Variable+"="+set.Value.String()+"@"+strconv.FormatInt(it.Revision, 10))
		}
	}
	for i, w := range want {
		ev := nextEvent(t, sub)
		if got := ev.Variable.Name + "=" + ev.Variable.Value.String() + "@" + strconv.FormatInt(ev.Revision, 10); got != w {
			t.Fatalf("event %d: %s, want %s", i, got, w)
		}
	}
}

// Batches of a call that fail whole (a missing session) do not stop the
// batches after them; a call whose engine closes part way applies a
// prefix, and the rest fail with ErrClosed.
func TestSetBatchesFailures(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "n", Integer(0))
	res := e.SetBatches(ctx, []SetManyRequest{
		{Session: "s", Sets: []SetRequest{{Variable: "n", Value: Integer(1)}}},
		{Session: "gone", Sets: []SetRequest{{Variable: "n", Value: Integer(2)}}},
		{Session: "s"}, // a barrier: the revision, no write
		{Session: "s", Sets: []SetRequest{{Variable: "n", Value: Integer(3)}}},
	})
	if res[0].Err != nil || !errors.Is(res[1].Err, ErrSessionNotFound) || res[2].Err != nil ||
		res[2].Revision != res[0].Items[0].Revision || res[3].Err != nil {
		t.Fatalf("results %+v", res)
	}

	defer func(n int) { pipelineSets = n }(pipelineSets)
	pipelineSets = 1
	batches := make([]SetManyRequest, 20000)
	for i := range batches {
		batches[i] = SetManyRequest{Session: "s", Sets: []SetRequest{{Variable: "n", Value: Integer(int64(i))}}}
	}
	done := make(chan []BatchResult)
	go func() { done <- e.SetBatches(ctx, batches) }()
	time.Sleep(time.Millisecond) // any moment will do: the check holds for all
	e.Close()
	res = <-done
	failed := false
	for i, r := range res {
		switch {
		case r.Err == nil && failed:
			t.Fatalf("batch %d applied after an earlier one failed", i)
		case r.Err != nil && !errors.Is(r.Err, ErrClosed):
			t.Fatalf("batch %d: %v", i, r.Err)
		case r.Err != nil:
			failed = true
		}
	}
}

// A journaled engine fed upserts and pipelined batches (with atomic ones,
// failing items, costly checks and registrations and deletions between
// them) gives the same state when replayed from its journal.
func TestReplayOfUpsertsAndPipelines(t *testing.T) {
	defer func(n int) { pipelineSets = n }(pipelineSets)
	pipelineSets = 5
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{}
	cfg := journalConfig(clock, mj)
	cfg.MaxVariablesPerSession = 12
	live, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithTenant(context.Background(), "t")
	for _, id := range []string{"a", "b"} {
		if _, _, err := live.CreateSession(ctx, CreateSessionRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := live.Register(ctx, RegisterRequest{Session: "a", Name: "p", Type: TypeString, Value: String("a"),
		Constraints: Constraints{Pattern: "[a-s]*"}}); err != nil {
		t.Fatal(err)
	}
	set := func() SetRequest {
		s := SetRequest{Variable: "v" + strconv.Itoa(r.IntN(16)), Value: Float(float64(r.IntN(100))), Source: "w"}
		switch r.IntN(6) {
		case 0:
			s.Variable, s.Value = "p", String([]string{"ok", "zz"}[r.IntN(2)])
		case 1, 2, 3:
			s.CreateType = TypeFloat
		case 4:
			s.CreateType, s.Value = TypeInteger, Integer(1) // wrong type for most
		}
		if r.IntN(4) == 0 {
			s.Metadata = map[string]string{"k": strconv.Itoa(r.IntN(5))}
		}
		if r.IntN(5) == 0 {
			s.HasExpectedVersion, s.ExpectedVersion = true, int64(r.IntN(3))
		}
		return s
	}
	applied := 0
	for range 60 {
		var batches []SetManyRequest
		for range 1 + r.IntN(8) {
			b := SetManyRequest{Session: []string{"a", "b"}[r.IntN(2)], Atomic: r.IntN(3) == 0}
			for range r.IntN(5) {
				b.Sets = append(b.Sets, set())
			}
			batches = append(batches, b)
		}
		for _, res := range live.SetBatches(ctx, batches) {
			for _, it := range res.Items {
				if it.Err == nil {
					applied++
				}
			}
		}
		switch r.IntN(3) {
		case 0:
			_, _ = live.Delete(ctx, "ab"[r.IntN(2):][:1], "v"+strconv.Itoa(r.IntN(16)))
		case 1:
			_, _ = live.Set(ctx, SetRequest{Session: "b", Variable: "v" + strconv.Itoa(r.IntN(16)), Value: Float(1), CreateType: TypeFloat})
		}
		clock.advance(10 * time.Millisecond)
	}
	if applied < 100 {
		t.Fatalf("only %d sets applied: the history is too tame", applied)
	}
	var want stateDump
	inLoop(t, live, func(st *state) { want = dumpState(st) })
	live.Close()
	replaysTo(t, mj, clock, want)
	kinds := map[byte]int{}
	for _, rec := range mj.records {
		kinds[rec[4]]++
	}
	if kinds[recUpsert] == 0 || kinds[recSet] == 0 {
		t.Fatalf("record kinds %v: want upserts and plain sets", kinds)
	}
}

// When the journal fails part way through a call, the batches that
// succeeded are a prefix of the call, and they are exactly what the
// engine holds once it takes writes again.
func TestSetBatchesPrefixOnJournalFailure(t *testing.T) {
	defer func(n int) { pipelineSets = n }(pipelineSets)
	pipelineSets = 1
	defer func(d time.Duration) { probeInterval = d }(probeInterval)
	probeInterval = 0
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{}
	cfg := journalConfig(clock, mj)
	cfg.MaxBatch = 2 // many cycles, so many appends, for the call
	live, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	ctx := context.Background()
	if _, _, err := live.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	mj.mu.Lock()
	mj.failEvery = 3 // some append of the call fails
	mj.mu.Unlock()
	batches := make([]SetManyRequest, 300)
	for i := range batches {
		batches[i] = SetManyRequest{Session: "s", Sets: []SetRequest{{Variable: "n", Value: Integer(int64(i)), CreateType: TypeInteger}}}
	}
	res := live.SetBatches(ctx, batches)
	mj.mu.Lock()
	mj.failEvery = 0
	mj.mu.Unlock()
	applied, failed := 0, false
	for i, r := range res {
		switch {
		case r.Err == nil && failed:
			t.Fatalf("batch %d applied after an earlier one failed", i)
		case r.Err == nil:
			applied++
		case !errors.Is(r.Err, ErrUnavailable):
			t.Fatalf("batch %d: %v", i, r.Err)
		default:
			failed = true
		}
	}
	if !failed {
		t.Fatal("no append failed: the test did not test what it says")
	}
	t.Logf("%d of %d batches applied before the failure", applied, len(batches))
	waitFor(t, "writes to come back", func() bool {
		_, _, err := live.CreateSession(ctx, CreateSessionRequest{ID: "probe"})
		return err == nil
	})
	v, err := live.Get(ctx, "s", "n")
	if applied == 0 {
		if !errors.Is(err, ErrVariableNotFound) {
			t.Fatalf("nothing applied, yet n is %v (%v)", v, err)
		}
		return
	}
	if err != nil || v.Version != int64(applied) || v.Value.Integer() != int64(applied-1) {
		t.Fatalf("n = %v at version %d, want %d at version %d (%v)", v.Value, v.Version, applied-1, applied, err)
	}
}
