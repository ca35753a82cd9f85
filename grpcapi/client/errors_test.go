package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// TestReason: Reason reads a real server's ErrorInfo, reason and
// metadata; an error no server decided has none.
func TestReason(t *testing.T) {
	c := serveWith(t, grpcapi.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.GetSession(ctx, &pb.GetSessionRequest{SessionId: "nope"})
	if reason, _ := client.Reason(err); reason != grpcapi.ReasonSessionNotFound {
		t.Fatalf("Reason(%v) = %q, want %s", err, reason, grpcapi.ReasonSessionNotFound)
	}
	if _, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
		Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: 1}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x",
		Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: 2}}, ExpectedVersion: proto.Int64(5)})
	reason, md := client.Reason(err)
	if reason != grpcapi.ReasonVersionConflict || md["current_version"] != "1" || md["expected_version"] != "5" {
		t.Fatalf("Reason(%v) = %q %v, want %s with current_version 1", err, reason, md, grpcapi.ReasonVersionConflict)
	}
	if reason, md := client.Reason(errors.New("not a status")); reason != "" || md != nil {
		t.Fatalf("Reason of a plain error = %q %v", reason, md)
	}
}

// A set with an expected version that another writer beat: the reason
// says so, and its metadata the version to retry with.
func ExampleReason() {
	// What a server answers (here built by hand).
	st, _ := status.New(codes.Aborted, `version conflict on "x": expected version 2, current version is 3`).
		WithDetails(&errdetails.ErrorInfo{Reason: "VERSION_CONFLICT", Domain: "varwatch.v1",
			Metadata: map[string]string{"variable": "x", "expected_version": "2", "current_version": "3"}})
	err := st.Err()

	switch reason, md := client.Reason(err); reason {
	case "VERSION_CONFLICT":
		fmt.Println("retry with expected_version", md["current_version"])
	case "VARIABLE_NOT_FOUND":
		fmt.Println("register it first")
	}
	// Output: retry with expected_version 3
}
