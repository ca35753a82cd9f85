package client_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// waitUntil polls cond until it holds, failing after a generous deadline
// (never an expected duration).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestWatchesShareOneStream: a client's watches go on one Watch stream,
// which opens with the first and closes with the last, leaving no
// goroutine behind; each watch still gets its own updates.
func TestWatchesShareOneStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr, srv, _ := serveAt(t, "127.0.0.1:0", engine.Config{})
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	newSessionWith(t, ctx, c, 0)
	before := runtime.NumGoroutine()

	var ws []*client.Watch
	for i := range 10 {
		view := pb.View_VIEW_FULL
		if i%2 == 1 {
			view = pb.View_VIEW_VALUE
		}
		w := c.Watch(ctx, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"}, IncludeInitialValues: true},
			client.WatchOptions{View: view})
		ws = append(ws, w)
		if up := nextOf(t, w); up.GetUpdateType() != "initial_value" {
			t.Fatalf("watch %d: got %v, want x's initial value", i, up)
		}
		nextOf(t, w) // initial_values_complete
	}
	if n := srv.ActiveStreams(); n != 1 {
		t.Fatalf("10 watches hold %d streams, want 1", n)
	}
	if _, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: intValue(7)}); err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		up := nextOf(t, w)
		if up.GetUpdateType() != "value_change" || up.GetVariable().GetValue().GetIntegerValue() != 7 {
			t.Fatalf("watch %d: got %v, want x=7", i, up)
		}
		if full := up.GetVariable().GetCreatedAt() != nil; full != (i%2 == 0) {
			t.Fatalf("watch %d: creation fields present %v, view %v", i, full, i%2)
		}
	}
	for _, w := range ws {
		w.Close()
	}
	waitUntil(t, "the shared stream to close", func() bool { return srv.ActiveStreams() == 0 })
	waitUntil(t, "the stream's goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}
