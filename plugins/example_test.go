package plugins_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/varwatch/varwatch/plugins"
)

// A server loads its plugins once; each watch acquires the chain it asked
// for (shared with every watch that asked for the same), runs its batches
// through it, and releases it when the stream ends.
func Example() {
	ctx := context.Background()
	wasm, err := os.ReadFile(filepath.Join("testdata", "passthrough.wasm"))
	if err != nil {
		panic(err)
	}
	m, err := plugins.New(ctx, plugins.Config{Plugins: []plugins.PluginConfig{
		{Name: "pass", Wasm: wasm, OnError: plugins.OnErrorDrop},
	}})
	if err != nil {
		panic(err)
	}
	defer m.Close(ctx)

	chain, err := m.Acquire(ctx, []plugins.FilterSpec{{Name: "pass"}})
	if err != nil {
		panic(err) // a *plugins.FilterError is the client's mistake
	}
	defer chain.Release()

	batch := []plugins.Update{
		{Kind: plugins.KindValueChange, ID: "v1", Name: "temp", Type: plugins.TypeFloat, New: plugins.Float(21.5)},
	}
	verdicts, err := chain.Run(ctx, batch, nil)
	if err != nil {
		panic(err) // a *plugins.FaultError: a filter with on_error=close failed
	}
	for i, v := range verdicts {
		if v.Action != plugins.Drop {
			u := plugins.Apply(batch[i], v)
			fmt.Println(u.Name, u.New, v.Action)
		}
	}
	s := m.Stats()[0]
	fmt.Println(s.Name, "in", s.In, "passed", s.Passed)
	// Output:
	// temp 21.5 pass
	// pass in 1 passed 1
}
