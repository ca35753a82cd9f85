package grpcapi

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// TestLongIdentifiersAreNotEchoed: a request naming a 1 MiB identifier or
// sending a 1 MiB value that breaks a constraint gets its code (a
// malformed identifier is INVALID_ARGUMENT, not NOT_FOUND) with a short
// message, and changes nothing. The message used to quote the whole
// megabyte, which gRPC clients with a trailer limit (grpcio: 8 KiB) see as
// INTERNAL.
func TestLongIdentifiersAreNotEchoed(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	cases := []struct {
		name string
		code codes.Code
		call func(ctx context.Context, c pb.UnifiedBridgeClient) error
	}{
		{"GetSession", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.GetSession(ctx, &pb.GetSessionRequest{SessionId: huge})
			return err
		}},
		{"Heartbeat", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{SessionId: huge})
			return err
		}},
		{"InitializeSession", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "b" + huge})
			return err
		}},
		{"GetVariable", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "a", VariableIdentifier: huge})
			return err
		}},
		{"GetVariables", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.GetVariables(ctx, &pb.GetVariablesRequest{SessionId: "a", VariableIdentifiers: []string{"s", huge}})
			return err
		}},
		{"SetVariable", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "a", VariableIdentifier: huge, Value: strV("v")})
			return err
		}},
		{"SetVariable, value over max_length", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "a", VariableIdentifier: "s", Value: strV(huge)})
			return err
		}},
		{"SetVariables, atomic", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "a", Atomic: true, Updates: []*pb.SetVariableRequest{
				{VariableIdentifier: "s", Value: strV("ok")}, {VariableIdentifier: huge, Value: strV("v")}}})
			return err
		}},
		{"SetVariables, per item", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			resp, err := c.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "a", Updates: []*pb.SetVariableRequest{
				{VariableIdentifier: huge, Value: strV("v")}}})
			if err != nil {
				return err
			}
			r := resp.GetResults()[0]
			return status.Error(codes.Code(r.GetErrorCode()), r.GetError())
		}},
		{"DeleteVariable", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.DeleteVariable(ctx, &pb.DeleteVariableRequest{SessionId: "a", VariableIdentifier: huge})
			return err
		}},
		{"WatchVariables", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			return recvFirst(c.WatchVariables(ctx, &pb.WatchVariablesRequest{SessionId: "a", VariableIdentifiers: []string{huge}}))
		}},
		{"ListVariables, bad glob", codes.InvalidArgument, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.ListVariables(ctx, &pb.ListVariablesRequest{SessionId: "a", Pattern: "[" + huge})
			return err
		}},
		{"GetSession, a valid id of no session", codes.NotFound, func(ctx context.Context, c pb.UnifiedBridgeClient) error {
			_, err := c.GetSession(ctx, &pb.GetSessionRequest{SessionId: strings.Repeat("n", 128)})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			h.createSession("a")
			h.register("a", "s", pb.VariableType_VARIABLE_TYPE_STRING, strV("start"), &pb.Constraints{MaxLength: proto.Int64(16)})
			before := dataState(t, h)
			err := tc.call(h.ctx(), h.client)
			wantCode(t, err, tc.code)
			msg := status.Convert(err).Message()
			if len(msg) > 2*MaxMessageBytes {
				t.Fatalf("message of %d bytes: %.300s...", len(msg), msg)
			}
			if tc.code != codes.NotFound && !strings.Contains(msg, "bytes") {
				t.Errorf("message %q does not say how long the input was", msg)
			}
			if got := dataState(t, h); got != before {
				t.Errorf("state changed:\n%s\n%s", before, got)
			}
		})
	}
}

// dataState is what session "a" holds: its revision, variable count and
// the value of "s" (a failed call may still count as a use of the session,
// refreshing its TTL: that is not a change of state).
func dataState(t *testing.T, h *harness) string {
	t.Helper()
	info, err := h.eng.GetSession(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	v, err := h.eng.Get(context.Background(), "a", "s")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("rev=%d vars=%d s=%s@%d", info.Revision, info.VariableCount, v.Value, v.Version)
}
