package engine

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
)

// applySet builds each new version field by field: every field of the
// variable must reach the new version, changed only where a set changes
// it. Every field of the old version is set here, so a field added to
// Variable and left out of applySet fails the comparison.
func TestSetCarriesEveryFieldOver(t *testing.T) {
	ctx := context.Background()
	e := New(Config{})
	defer e.Close()
	mustCreate(t, e, "s")
	if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeInteger, Value: Integer(1),
		Constraints: Constraints{MaxInteger: new(int64(100))}, Metadata: map[string]string{"unit": "m"}}); err != nil {
		t.Fatal(err)
	}
	res, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(2), Source: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	old := res.Variable
	res, err = e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(3), Source: "w2",
		Metadata: map[string]string{"step": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	next := res.Variable
	changes := map[string]bool{"Value": true, "Version": true, "ModRevision": true, "UpdatedAt": true,
		"Source": true, "Metadata": true, "meta": true}
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(next).Elem()
	for i := range ov.NumField() {
		f := ov.Type().Field(i)
		if ov.Field(i).IsZero() {
			t.Fatalf("field %s of the old version is zero: give it a value in this test", f.Name)
		}
		if !changes[f.Name] && !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			t.Errorf("field %s: %v before the set, %v after", f.Name, ov.Field(i), nv.Field(i))
		}
	}
	if next.Value.Integer() != 3 || next.Version != old.Version+1 || next.ModRevision != res.Revision ||
		next.Source != "w2" || next.Metadata["unit"] != "m" || next.Metadata["step"] != "2" || next.meta == old.meta {
		t.Fatalf("the set's changes: %+v", next)
	}
}

// A version handed to a caller or a watcher never changes afterwards,
// however many writes follow: each write makes a new one. Run under
// -race, a write to a published version while the watcher reads it is
// a reported race; without it, the copies taken on receipt must still
// equal the versions at the end.
func TestPublishedVersionsNeverChange(t *testing.T) {
	ctx := context.Background()
	e := New(Config{SubscriptionBytes: -1})
	defer e.Close()
	mustCreate(t, e, "s")
	const vars, rounds = 8, 200
	for i := range vars {
		mustRegister(t, e, "s", fmt.Sprintf("v%d", i), Integer(0))
	}
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Buffer: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	type kept struct {
		v    *Variable
		seen Variable // *v when it was received
	}
	var watched []kept
	var watchErr error
	var wg sync.WaitGroup
	wg.Go(func() { // ends when it has every change, or when sub is closed
		for len(watched) < vars*rounds {
			ev, err := sub.Next(ctx)
			if err != nil {
				watchErr = err
				return
			}
			watched = append(watched, kept{ev.Variable, *ev.Variable})
		}
	})
	var answered []kept
	var writeErr error
	batch := []SetManyRequest{{Session: "s", Sets: make([]SetRequest, vars)}}
	for r := 0; r < rounds && writeErr == nil; r++ {
		for i := range vars {
			batch[0].Sets[i] = SetRequest{Variable: fmt.Sprintf("v%d", i), Value: Integer(int64(r + 1)),
				Metadata: map[string]string{"round": fmt.Sprint(r)}}
		}
		res := e.SetBatches(ctx, batch)[0]
		writeErr = res.Err
		for _, it := range res.Items {
			if it.Err != nil {
				writeErr = it.Err
				break
			}
			answered = append(answered, kept{it.Variable, *it.Variable})
		}
	}
	if writeErr != nil {
		sub.Close() // the watcher would wait for changes that never come
	}
	wg.Wait()
	if writeErr != nil || watchErr != nil {
		t.Fatalf("write: %v; watch: %v", writeErr, watchErr)
	}
	for _, k := range append(watched, answered...) {
		if !reflect.DeepEqual(*k.v, k.seen) {
			t.Fatalf("version %d of %s changed after it was handed out:\n then %+v\n now  %+v", k.seen.Version, k.seen.Name, k.seen, *k.v)
		}
	}
}
