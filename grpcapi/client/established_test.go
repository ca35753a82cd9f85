package client_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// establishedModes are the three kinds of stream a Watch can use.
var establishedModes = []struct {
	name string
	opts client.WatchOptions
}{
	{"mux", client.WatchOptions{}},
	{"dedicated", client.WatchOptions{Dedicated: true}},
	{"batched", client.WatchOptions{Batched: true}},
}

// TestEstablishedThenSetIsDelivered: a set made right after Established
// returns always reaches Next, on every kind of stream, with and without
// initial values. Without initial values the watch starts wherever the
// server registered it, so a set that raced the registration would be
// lost: Established must not return before it.
func TestEstablishedThenSetIsDelivered(t *testing.T) {
	const rounds = 150
	addr, _, _ := serveAt(t, "127.0.0.1:0", engine.Config{})
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	newSessionWith(t, ctx, c, 0)
	before := runtime.NumGoroutine()
	value := int64(0)
	for _, mode := range establishedModes {
		for _, initial := range []bool{false, true} {
			for range rounds {
				value++
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				w := c.Watch(wctx, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"}, IncludeInitialValues: initial}, mode.opts)
				if err := w.Established(wctx); err != nil {
					t.Fatalf("%s initial=%v: Established: %v", mode.name, initial, err)
				}
				if _, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: intValue(value)}); err != nil {
					t.Fatal(err)
				}
				for {
					up, err := w.Next()
					if err != nil {
						t.Fatalf("%s initial=%v: the set of %d after Established never came: %v", mode.name, initial, value, err)
					}
					if up.GetUpdateType() == "value_change" && up.GetVariable().GetValue().GetIntegerValue() == value {
						break
					}
				}
				w.Close()
				wcancel()
			}
		}
	}
	waitUntil(t, "the watches' goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

// TestEstablishedReportsTheEnd: a watch the server refuses makes
// Established return the error Next would, on every kind of stream; a
// second call returns it again; Established after registration returns
// nil at once; the caller's context bounds the wait.
func TestEstablishedReportsTheEnd(t *testing.T) {
	addr, _, _ := serveAt(t, "127.0.0.1:0", engine.Config{})
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	newSessionWith(t, ctx, c, 0)
	for _, mode := range establishedModes {
		t.Run(mode.name, func(t *testing.T) {
			w := c.Watch(ctx, &pb.WatchVariablesRequest{SessionId: "nope"}, mode.opts)
			defer w.Close()
			err := w.Established(ctx)
			if status.Code(err) != codes.NotFound {
				t.Fatalf("Established on a missing session: %v, want NOT_FOUND", err)
			}
			if again := w.Established(ctx); status.Code(again) != codes.NotFound {
				t.Fatalf("Established again: %v, want %v", again, err)
			}
			if _, next := w.Next(); status.Code(next) != codes.NotFound {
				t.Fatalf("Next: %v, want NOT_FOUND", next)
			}

			ok := c.Watch(ctx, &pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: true}, mode.opts)
			defer ok.Close()
			if err := ok.Established(ctx); err != nil {
				t.Fatal(err)
			}
			done, stop := context.WithCancel(ctx)
			stop()
			if err := ok.Established(done); err != nil {
				t.Fatalf("Established once registered, with a done context: %v", err)
			}
			// The initial values that arrived meanwhile wait for Next.
			if up := nextOf(t, ok); up.GetUpdateType() != "initial_value" {
				t.Fatalf("first update %v, want x's initial value", up)
			}
		})
	}
	w := c.Watch(ctx, &pb.WatchVariablesRequest{SessionId: "s"}, client.WatchOptions{})
	defer w.Close()
	done, stop := context.WithCancel(ctx)
	stop()
	if err := w.Established(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Established with a done context: %v, want context.Canceled", err)
	}
	if err := w.Established(ctx); err != nil {
		t.Fatalf("Established after a cancelled wait: %v", err)
	}
}
