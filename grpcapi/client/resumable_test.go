package client_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// serveWith serves an engine behind a grpcapi.Server built from cfg, on a
// gRPC server built with opts.
func serveWith(t *testing.T, cfg grpcapi.Config, opts ...grpc.ServerOption) *client.Client {
	t.Helper()
	eng := engine.New(engine.Config{})
	cfg.Backend = eng
	gs := grpc.NewServer(opts...)
	grpcapi.Register(gs, grpcapi.New(cfg))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	c, err := client.New(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); gs.Stop(); eng.Close() })
	return c
}

// TestWatchDoesNotRetryALimit: a watch ended by a limit
// (RESOURCE_EXHAUSTED other than SLOW_CONSUMER) surfaces the error at once
// instead of reconnecting into the same limit again and again.
func TestWatchDoesNotRetryALimit(t *testing.T) {
	cases := []struct {
		name string
		cfg  grpcapi.Config
		opts []grpc.ServerOption
		// provoke, if set, uses the limit up before the watch starts;
		// otherwise a set after the snapshot passes it.
		provoke func(ctx context.Context, t *testing.T, c *client.Client)
		reason  string // the ErrorInfo reason of the end, "" for none
	}{
		{
			name: "watch streams of the session (LIMIT_EXCEEDED)",
			cfg:  grpcapi.Config{MaxWatchStreamsPerSession: 1},
			provoke: func(ctx context.Context, t *testing.T, c *client.Client) {
				other, err := c.WatchVariables(ctx, &pb.WatchVariablesRequest{SessionId: "s"})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := other.Recv(); err != nil { // the first heartbeat: the stream holds its slot
					t.Fatal(err)
				}
			},
			reason: grpcapi.ReasonLimitExceeded,
		},
		{
			// The variable and a set's answer fit; an update, with the old
			// value and the new, does not.
			name: "an update larger than the server may send",
			opts: []grpc.ServerOption{grpc.MaxSendMsgSize(100 << 10)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c := serveWith(t, tc.cfg, tc.opts...)
			if _, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
				Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: strValue(strings.Repeat("i", 60<<10))}); err != nil {
				t.Fatal(err)
			}
			if tc.provoke != nil {
				tc.provoke(ctx, t, c)
			}
			w := c.Watch(ctx, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"},
				IncludeInitialValues: true}, client.WatchOptions{MaxAttempts: 3, MaxBackoff: time.Millisecond})
			defer w.Close()
			if tc.provoke == nil {
				for { // the snapshot, then the oversized change
					up, err := w.Next()
					if err != nil {
						t.Fatalf("before the oversized change: %v", err)
					}
					if up.GetUpdateType() == "initial_values_complete" {
						break
					}
				}
				if _, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x",
					Value: strValue(strings.Repeat("v", 60<<10))}); err != nil {
					t.Fatal(err)
				}
			}
			up, err := w.Next()
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("Next: %v, %v; want RESOURCE_EXHAUSTED", up, err)
			}
			if w.Resumes() != 0 {
				t.Errorf("the watch reconnected %d times into a limit", w.Resumes())
			}
			if got := errorReason(err); got != tc.reason {
				t.Errorf("reason %q, want %q", got, tc.reason)
			}
		})
	}
}

func strValue(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_StringValue{StringValue: s}} }

// errorReason is the ErrorInfo reason of a status error, or "".
func errorReason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}
