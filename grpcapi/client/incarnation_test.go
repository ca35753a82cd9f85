package client_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// serveAt serves a fresh in-memory engine with cfg on addr ("127.0.0.1:0"
// picks a port) and returns the address, the server, and a stop that ends
// it, as a crash or a restart without a data directory would (the test's
// cleanup stops it too).
func serveAt(tb testing.TB, addr string, cfg engine.Config) (string, *grpcapi.Server, func()) {
	tb.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	eng := engine.New(cfg)
	srv := grpcapi.New(grpcapi.Config{Backend: eng})
	gs := grpc.NewServer(grpcapi.ServerOption())
	grpcapi.Register(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			gs.Stop()
			eng.Close()
		}
	}
	tb.Cleanup(stop)
	return lis.Addr().String(), srv, stop
}

// ready makes a call wait out a reconnection instead of failing.
var ready = grpc.WaitForReady(true)

// reconnected waits until c's calls reach a server again: a call already
// on a connection that breaks fails even with WaitForReady, so the first
// ones after a drop may.
func reconnected(t *testing.T, ctx context.Context, c *client.Client) {
	t.Helper()
	for {
		_, err := c.Ping(ctx, &pb.PingRequest{}, ready)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no server again: %v", err)
		}
	}
}

// newSessionWith creates session s with variable x and sets it to each of values,
// and returns the incarnation.
func newSessionWith(t *testing.T, ctx context.Context, c *client.Client, values ...int64) string {
	t.Helper()
	resp, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}, ready)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
		Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: intValue(values[0])}, ready); err != nil {
		t.Fatal(err)
	}
	for _, v := range values[1:] {
		if _, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: intValue(v)}, ready); err != nil {
			t.Fatal(err)
		}
	}
	return resp.GetSession().GetIncarnation()
}

// nextOf is w.Next, failing the test on an error.
func nextOf(t *testing.T, w *client.Watch) *pb.VariableUpdate {
	t.Helper()
	up, err := w.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return up
}

// TestWatchStopsAtANewIncarnation: while a watch is away (its connection
// cut, or the in-memory server restarted), its session is created again
// under the same id and written past the watch's revision. Resuming must
// end with the typed incarnation error, never deliver the new session's
// changes as if they continued the old ones; with Resnapshot, the watch
// starts over with the new incarnation's initial values.
func TestWatchStopsAtANewIncarnation(t *testing.T) {
	for _, tc := range []struct {
		name       string
		restart    bool // restart the server, else delete and recreate the session behind a dropped connection
		resnapshot bool
	}{
		{"recreated behind a cut connection", false, false},
		{"recreated behind a cut connection, resnapshot", false, true},
		{"in-memory server restarted", true, false},
		{"in-memory server restarted, resnapshot", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			addr, _, stop := serveAt(t, "127.0.0.1:0", engine.Config{})
			p := newProxy(t, addr)
			c, err := client.New(p.lis.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			first := newSessionWith(t, ctx, c, 0, 1, 2, 3) // x=3 at revision 4

			w := c.Watch(ctx, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"}, IncludeInitialValues: true},
				client.WatchOptions{Resnapshot: tc.resnapshot, MaxBackoff: 20 * time.Millisecond})
			defer w.Close()
			if up := nextOf(t, w); up.GetUpdateType() != "initial_value" || up.GetVariable().GetValue().GetIntegerValue() != 3 {
				t.Fatalf("got %v, want x's initial value 3", up)
			}
			nextOf(t, w) // initial_values_complete
			if w.Incarnation() != first {
				t.Fatalf("Watch.Incarnation = %q, want %q", w.Incarnation(), first)
			}

			if tc.restart {
				stop()
				serveAt(t, addr, engine.Config{}) // same address, nothing kept
			} else {
				p.drop()
				reconnected(t, ctx, c)
				if _, err := c.CleanupSession(ctx, &pb.CleanupSessionRequest{SessionId: "s"}, ready); err != nil {
					t.Fatal(err)
				}
			}
			reconnected(t, ctx, c)
			// The new history passes the watch's revision 4, so the old
			// code resumed from it without a complaint.
			second := newSessionWith(t, ctx, c, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110)
			if second == first {
				t.Fatal("the recreated session kept its incarnation")
			}

			up, err := w.Next()
			if !tc.resnapshot {
				var changed *client.IncarnationChangedError
				if !errors.As(err, &changed) || !errors.Is(err, client.ErrIncarnationChanged) {
					t.Fatalf("Next = %v, %v; want an *IncarnationChangedError", up, err)
				}
				if changed.Watched != first || changed.Current != second || changed.Session != "s" {
					t.Fatalf("error %+v: want watched %q, current %q", changed, first, second)
				}
				if status.Code(err) != codes.FailedPrecondition {
					t.Fatalf("status code %v, want FAILED_PRECONDITION", status.Code(err))
				}
				if _, again := w.Next(); again != err {
					t.Fatalf("Next after the end = %v, want the same error", again)
				}
				return
			}
			if err != nil {
				t.Fatalf("Next with Resnapshot: %v", err)
			}
			if up.GetUpdateType() != "initial_value" || up.GetVariable().GetValue().GetIntegerValue() != 110 || up.GetRevision() != 11 {
				t.Fatalf("after the new incarnation got %v, want x's initial value 110 at revision 11", up)
			}
			if up := nextOf(t, w); up.GetUpdateType() != "initial_values_complete" || up.GetIncarnation() != second {
				t.Fatalf("got %v, want initial_values_complete of incarnation %q", up, second)
			}
			if w.Incarnation() != second {
				t.Fatalf("Watch.Incarnation = %q, want %q", w.Incarnation(), second)
			}
		})
	}
}
