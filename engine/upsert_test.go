package engine

import (
	"context"
	"errors"
	"strconv"
	"testing"
)

// An upsert of a missing variable reaches a pattern watcher and a
// whole-session watcher as a registration followed by the value, both at
// the one revision the write was answered with; the variable is at
// version 1 with the written value, source and metadata.
func TestUpsertIsRegistrationThenValueAtOneRevision(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	pattern, err := e.Watch(ctx, WatchRequest{Session: "s", Pattern: "m.*"})
	if err != nil {
		t.Fatal(err)
	}
	defer pattern.Close()
	whole, err := e.Watch(ctx, WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()

	res, err := e.Set(ctx, SetRequest{Session: "s", Variable: "m.loss", Value: Float(0.5), CreateType: TypeFloat,
		Source: "trainer", Metadata: map[string]string{"step": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	v := res.Variable
	if v.Version != 1 || v.CreateRevision != res.Revision || v.ModRevision != res.Revision || v.Value.Float() != 0.5 ||
		v.Source != "trainer" || v.Metadata["step"] != "1" || v.Type != TypeFloat {
		t.Fatalf("created %+v at revision %d", v, res.Revision)
	}
	for _, sub := range []*Subscription{pattern, whole} {
		reg, val := nextEvent(t, sub), nextEvent(t, sub)
		if reg.Type != EventVariableRegistered || val.Type != EventValueChange ||
			reg.Revision != res.Revision || val.Revision != res.Revision ||
			val.Variable.Value.Float() != 0.5 || val.Source != "trainer" || val.Metadata["step"] != "1" {
			t.Fatalf("watcher saw %v then %v, want registered then value at %d", reg, val, res.Revision)
		}
	}

	// The second upsert is a plain set: one event, a new revision.
	res2, err := e.Set(ctx, SetRequest{Session: "s", Variable: "m.loss", Value: Float(0.25), CreateType: TypeFloat})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Variable.Version != 2 || res2.Revision != res.Revision+1 || res2.Variable.ID != v.ID {
		t.Fatalf("second upsert gave %+v at %d", res2.Variable, res2.Revision)
	}
	if ev := nextEvent(t, pattern); ev.Type != EventValueChange || ev.Revision != res2.Revision {
		t.Fatalf("second upsert reached the watcher as %v", ev)
	}
}

// Upserts that cannot apply change nothing and say why.
func TestUpsertRefusals(t *testing.T) {
	ctx := context.Background()
	e := New(Config{MaxVariablesPerSession: 3})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "count", Integer(1))
	for _, tc := range []struct {
		name string
		set  SetRequest
		want error
	}{
		{"value of another type", SetRequest{Variable: "x", Value: Integer(1), CreateType: TypeFloat}, ErrInvalidArgument},
		{"existing variable of another type", SetRequest{Variable: "count", Value: Float(1), CreateType: TypeFloat}, ErrInvalidArgument},
		{"unknown type", SetRequest{Variable: "x", Value: Float(1), CreateType: 99}, ErrInvalidArgument},
		{"choice needs its choices", SetRequest{Variable: "x", Value: Choice("a"), CreateType: TypeChoice}, ErrInvalidArgument},
		{"bad name", SetRequest{Variable: "has space", Value: Float(1), CreateType: TypeFloat}, ErrInvalidArgument},
		{"an id is never created", SetRequest{Variable: "77", Value: Float(1), CreateType: TypeFloat}, ErrVariableNotFound},
		{"expected version of a missing variable", SetRequest{Variable: "x", Value: Float(1), CreateType: TypeFloat,
			HasExpectedVersion: true, ExpectedVersion: 3}, ErrVersionConflict},
		{"existing variable, expected version 0", SetRequest{Variable: "count", Value: Integer(2), CreateType: TypeInteger,
			HasExpectedVersion: true, ExpectedVersion: 0}, ErrVersionConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshotState(t, e, "s")
			tc.set.Session = "s"
			if _, err := e.Set(ctx, tc.set); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if after := snapshotState(t, e, "s"); after != before {
				t.Fatalf("state changed:\n%s\n%s", before, after)
			}
		})
	}

	// Expected version 0 creates only what is missing.
	if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "fresh", Value: Float(1), CreateType: TypeFloat,
		HasExpectedVersion: true}); err != nil {
		t.Fatal(err)
	}

	// An atomic call creating past the variable limit creates nothing.
	before := snapshotState(t, e, "s")
	_, err := e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: []SetRequest{
		{Variable: "a", Value: Float(1), CreateType: TypeFloat},
		{Variable: "b", Value: Float(1), CreateType: TypeFloat},
	}})
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != LimitVariablesPerSession {
		t.Fatalf("atomic creation past the limit: %v", err)
	}
	// Nor one naming its new variable twice.
	_, err = e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: []SetRequest{
		{Variable: "a", Value: Float(1), CreateType: TypeFloat},
		{Variable: "a", Value: Float(2), CreateType: TypeFloat},
	}})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("atomic call creating a twice: %v", err)
	}
	if after := snapshotState(t, e, "s"); after != before {
		t.Fatalf("state changed:\n%s\n%s", before, after)
	}
}

// An atomic call that creates some variables and sets others applies
// them all at one revision; a non-atomic one gives each its own.
func TestUpsertInSetMany(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "old", Float(0))
	sub, err := e.Watch(ctx, WatchRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	res, err := e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: []SetRequest{
		{Variable: "n1", Value: Float(1), CreateType: TypeFloat},
		{Variable: "old", Value: Float(2)},
		{Variable: "n2", Value: String("x"), CreateType: TypeString},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []EventType{EventVariableRegistered, EventValueChange, EventValueChange, EventVariableRegistered, EventValueChange}
	for i, typ := range want {
		if ev := nextEvent(t, sub); ev.Type != typ || ev.Revision != res.Revision {
			t.Fatalf("event %d: %v, want %v at %d", i, ev, typ, res.Revision)
		}
	}
	res, err = e.SetMany(ctx, SetManyRequest{Session: "s", Sets: []SetRequest{
		{Variable: "n3", Value: Float(1), CreateType: TypeFloat},
		{Variable: "n3", Value: Float(2), CreateType: TypeFloat}, // created by the one before
		{Variable: "n4", Value: Integer(1), CreateType: TypeFloat},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if it := res.Items; it[0].Err != nil || it[1].Err != nil || it[1].Variable.Version != 2 ||
		it[1].Revision != it[0].Revision+1 || !errors.Is(it[2].Err, ErrInvalidArgument) {
		t.Fatalf("non-atomic upserts: %+v", it)
	}
}

// Creating a variable whose name costs too much to match on the loop
// against the session's pattern watches is routed off the loop, as a
// registration is, and still reaches exactly the watches it matches.
func TestUpsertRoutedOffTheLoop(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	var subs []*Subscription
	for i := range 200 { // together past maxLoopGlobSteps for a long name
		p := "*a*b*c*d*" + strconv.Itoa(i%2)
		sub, err := e.Watch(ctx, WatchRequest{Session: "s", Pattern: p})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		subs = append(subs, sub)
	}
	name := "a_b_c_d_"
	for len(name) < 200 {
		name += "xyz"
	}
	name += "1"
	inLoop(t, e, func(st *state) {
		if c := st.sessions["s"].routeCost(name); c <= maxLoopGlobSteps {
			t.Fatalf("route cost %d: the test does not route off the loop", c)
		}
	})
	res, err := e.Set(ctx, SetRequest{Session: "s", Variable: name, Value: Float(1), CreateType: TypeFloat})
	if err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		if i%2 == 0 {
			continue
		}
		if ev := nextEvent(t, sub); ev.Type != EventVariableRegistered || ev.Revision != res.Revision {
			t.Fatalf("watch %d: %v", i, ev)
		}
	}
	if evs, _ := subs[0].Drain(nil); len(evs) != 0 {
		t.Fatalf("a watch the name does not match got %v", evs)
	}
}

// An upsert counts against its tenant's variable quota as a registration
// does, on every path: Set, a non-atomic SetMany and an atomic one.
func TestUpsertTenantQuota(t *testing.T) {
	e := New(Config{})
	defer e.Close()
	ctx := WithQuota(WithTenant(context.Background(), "acme"), Quota{MaxVariables: 2})
	if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "a", Value: Float(1), CreateType: TypeFloat}); err != nil {
		t.Fatal(err)
	}
	res, err := e.SetMany(ctx, SetManyRequest{Session: "s", Sets: []SetRequest{
		{Variable: "b", Value: Float(1), CreateType: TypeFloat},
		{Variable: "c", Value: Float(1), CreateType: TypeFloat},
		{Variable: "a", Value: Float(2), CreateType: TypeFloat}, // exists: a plain set
	}})
	if err != nil {
		t.Fatal(err)
	}
	var le *LimitError
	if res.Items[0].Err != nil || !errors.As(res.Items[1].Err, &le) || le.Limit != LimitTenantVariables || res.Items[2].Err != nil {
		t.Fatalf("non-atomic upserts at the quota: %+v", res.Items)
	}
	before := snapshotState(t, e, "s")
	if _, err := e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: []SetRequest{
		{Variable: "a", Value: Float(3)},
		{Variable: "d", Value: Float(1), CreateType: TypeFloat},
	}}); !errors.As(err, &le) || le.Limit != LimitTenantVariables {
		t.Fatalf("atomic upsert past the quota: %v", err)
	}
	if after := snapshotState(t, e, "s"); after != before {
		t.Fatalf("state changed:\n%s\n%s", before, after)
	}
}
