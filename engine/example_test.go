package engine_test

import (
	"context"
	"fmt"

	"github.com/varwatch/varwatch/engine"
)

// A watch registers and snapshots in one step, so the change made right
// after it is delivered after the initial value, never lost.
func Example() {
	ctx := context.Background()
	e := engine.New(engine.Config{})
	defer e.Close()

	sess, _, _ := e.CreateSession(ctx, engine.CreateSessionRequest{ID: "lab"})
	_, _ = e.Register(ctx, engine.RegisterRequest{
		Session: sess.ID, Name: "temperature", Type: engine.TypeFloat, Value: engine.Float(21.5),
	})

	sub, _ := e.Watch(ctx, engine.WatchRequest{
		Session: "lab", Variables: []string{"temperature"}, IncludeInitialValues: true,
	})
	defer sub.Close()

	_, _ = e.Set(ctx, engine.SetRequest{Session: "lab", Variable: "temperature", Value: engine.Float(22), Source: "sensor"})

	for i := 0; i < 3; i++ {
		ev, _ := sub.Next(ctx)
		switch ev.Type {
		case engine.EventInitialValue:
			fmt.Println(ev.Type, ev.Variable.Name, ev.Variable.Value)
		case engine.EventInitialValuesComplete:
			fmt.Println(ev.Type, "at revision", ev.Revision)
		case engine.EventValueChange:
			fmt.Println(ev.Type, ev.Variable.Name, ev.OldValue, "->", ev.Variable.Value, "by", ev.Source)
		}
	}
	// Output:
	// initial_value temperature 21.5
	// initial_values_complete at revision 1
	// value_change temperature 21.5 -> 22 by sensor
}

// An optimistic write: it applies only if nobody wrote since version 1.
func ExampleEngine_Set_expectedVersion() {
	ctx := context.Background()
	e := engine.New(engine.Config{})
	defer e.Close()
	_, _, _ = e.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"})
	_, _ = e.Register(ctx, engine.RegisterRequest{Session: "s", Name: "n", Type: engine.TypeInteger, Value: engine.Integer(0)})

	_, err := e.Set(ctx, engine.SetRequest{Session: "s", Variable: "n", Value: engine.Integer(1), ExpectedVersion: 1, HasExpectedVersion: true})
	fmt.Println(err)
	_, err = e.Set(ctx, engine.SetRequest{Session: "s", Variable: "n", Value: engine.Integer(2), ExpectedVersion: 1, HasExpectedVersion: true})
	fmt.Println(err)
	// Output:
	// <nil>
	// engine: version conflict on "n": expected version 1, current version is 2
}

// An atomic multi-set applies every change at one revision, and a watcher
// receives them together.
func ExampleEngine_SetMany() {
	ctx := context.Background()
	e := engine.New(engine.Config{})
	defer e.Close()
	_, _, _ = e.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"})
	for _, name := range []string{"x", "y"} {
		_, _ = e.Register(ctx, engine.RegisterRequest{Session: "s", Name: name, Type: engine.TypeFloat, Value: engine.Float(0)})
	}
	sub, _ := e.Watch(ctx, engine.WatchRequest{Session: "s", Pattern: "*"})
	defer sub.Close()

	res, _ := e.SetMany(ctx, engine.SetManyRequest{Session: "s", Atomic: true, Sets: []engine.SetRequest{
		{Variable: "x", Value: engine.Float(1)},
		{Variable: "y", Value: engine.Float(2)},
	}})
	fmt.Println("revision", res.Revision)
	for i := 0; i < 2; i++ {
		ev, _ := sub.Next(ctx)
		fmt.Println(ev.Revision, ev.Variable.Name, ev.Variable.Value)
	}
	// Output:
	// revision 3
	// 3 x 1
	// 3 y 2
}

// Lists variables whose names match a glob.
func ExampleEngine_List() {
	ctx := context.Background()
	e := engine.New(engine.Config{})
	defer e.Close()
	_, _, _ = e.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"})
	for _, name := range []string{"sensor/b", "sensor/a", "motor"} {
		_, _ = e.Register(ctx, engine.RegisterRequest{Session: "s", Name: name, Type: engine.TypeBoolean, Value: engine.Boolean(true)})
	}
	res, _ := e.List(ctx, "s", "sensor/*")
	for _, v := range res.Variables {
		fmt.Println(v.Name)
	}
	// Output:
	// sensor/a
	// sensor/b
}

// SetBatches hands the loop many writes at once: they apply in the order
// given, and the caller wakes once per few thousand sets instead of once
// per set. An upsert (CreateType) creates its variable with its first
// value.
func ExampleEngine_SetBatches() {
	ctx := context.Background()
	e := engine.New(engine.Config{})
	defer e.Close()
	_, _, _ = e.CreateSession(ctx, engine.CreateSessionRequest{ID: "run"})

	var batches []engine.SetManyRequest
	for step := range 3 {
		batches = append(batches, engine.SetManyRequest{Session: "run", Sets: []engine.SetRequest{
			{Variable: "loss", Value: engine.Float(1 / float64(step+1)), CreateType: engine.TypeFloat},
		}})
	}
	for _, r := range e.SetBatches(ctx, batches) {
		it := r.Items[0]
		fmt.Println(it.Variable.Name, it.Variable.Value, "version", it.Variable.Version, "revision", it.Revision)
	}
	// Output:
	// loss 1 version 1 revision 1
	// loss 0.5 version 2 revision 2
	// loss 0.3333333333333333 version 3 revision 3
}
