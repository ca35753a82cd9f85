package cli

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/cluster"
	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/grpcapi"
	vwclient "github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// A write whose log record is larger than the NATS servers' max_payload
// fails as a limit (RESOURCE_EXHAUSTED, LIMIT_EXCEEDED naming
// nats_max_payload and what it leaves, as one server's limits do), not as
// CLUSTER_UNAVAILABLE; it changes nothing, and the writes after it apply.
func TestClusterServeWriteTooLarge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const maxPayload = 256 << 10 // at least a snapshot chunk (128 KiB)
	nats := natstest.Start(t, 1, natstest.MaxPayload(maxPayload))
	a := startClusterNode(t, nats.URL())
	if _, err := a.api.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_StringValue{StringValue: s}} }
	if _, err := a.api.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
		Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: str("small")}); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("v", maxPayload+1)
	half := strings.Repeat("h", maxPayload/2+1) // two of them do not fit one record
	for _, tc := range []struct {
		name  string
		write func() error
	}{
		{"set", func() error {
			_, err := a.api.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: str(big)})
			return err
		}},
		{"register", func() error {
			_, err := a.api.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "y",
				Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: str(big)})
			return err
		}},
		{"atomic set of two halves", func() error {
			_, err := a.api.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
				{VariableIdentifier: "x", Value: str(half)}, {VariableIdentifier: "x", Value: str(half)}}})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.write()
			st, _ := status.FromError(err)
			var info *errdetails.ErrorInfo
			var quota *errdetails.QuotaFailure
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					info = d
				case *errdetails.QuotaFailure:
					quota = d
				}
			}
			if st.Code() != codes.ResourceExhausted || info.GetReason() != grpcapi.ReasonLimitExceeded ||
				info.GetMetadata()["limit"] != cluster.LimitMessageBytes {
				t.Fatalf("got %v; want RESOURCE_EXHAUSTED, reason %s, limit %s", err, grpcapi.ReasonLimitExceeded, cluster.LimitMessageBytes)
			}
			limit, perr := strconv.Atoi(info.GetMetadata()["value"])
			if perr != nil || limit <= 0 || limit >= maxPayload {
				t.Fatalf("metadata value %q: want the bytes max_payload %d leaves a record", info.GetMetadata()["value"], maxPayload)
			}
			if !strings.Contains(st.Message(), "bytes") || !strings.Contains(st.Message(), strconv.Itoa(maxPayload)) ||
				len(quota.GetViolations()) != 1 || quota.GetViolations()[0].GetSubject() != cluster.LimitMessageBytes {
				t.Fatalf("message %q, quota %v: want the record's size and the limit", st.Message(), quota)
			}
		})
	}

	// Nothing changed, and the log goes on.
	v, err := a.api.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "x"})
	if err != nil || v.GetVariable().GetValue().GetStringValue() != "small" || v.GetVariable().GetVersion() != 1 {
		t.Fatalf("after the refused writes: %v, %v; want x=small at version 1", v, err)
	}
	if _, err := a.api.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "y"}); status.Code(err) != codes.NotFound {
		t.Fatalf("the refused registration of y: %v", err)
	}
	if res, err := a.api.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: str("after")}); err != nil ||
		res.GetVariable().GetVersion() != 2 {
		t.Fatalf("a set after the refused ones: %v, %v", res, err)
	}
}

// Writes that each fit in a NATS message are not refused because
// together they do not: a non-atomic SetVariables, and a pipelined
// writer's requests, larger than max_payload go in several messages.
func TestClusterServeManyWritesLargerThanAMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const maxPayload = 256 << 10
	nats := natstest.Start(t, 1, natstest.MaxPayload(maxPayload))
	a := startClusterNode(t, nats.URL())
	if _, err := a.api.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_StringValue{StringValue: s}} }
	third := strings.Repeat("t", maxPayload/3)
	var sets []*pb.SetVariableRequest
	for _, name := range []string{"a", "b", "c", "d"} {
		if _, err := a.api.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: name,
			Type: pb.VariableType_VARIABLE_TYPE_STRING, InitialValue: str("")}); err != nil {
			t.Fatal(err)
		}
		sets = append(sets, &pb.SetVariableRequest{VariableIdentifier: name, Value: str(third)})
	}
	res, err := a.api.SetVariables(ctx, &pb.SetVariablesRequest{SessionId: "s", Updates: sets})
	if err != nil {
		t.Fatalf("a non-atomic SetVariables of four thirds of max_payload: %v", err)
	}
	for i, r := range res.GetResults() {
		if !r.GetSuccess() {
			t.Fatalf("update %d: %v", i, r)
		}
	}

	c, err := vwclient.New(a.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Writer(ctx, "s", vwclient.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 200 writes of 4 KiB: the writer sends them in requests of up to
	// 1 MiB, four times max_payload.
	var pending []*vwclient.Pending
	for i := range 200 {
		pending = append(pending, w.Set("a", str(strings.Repeat(string(rune('a'+i%26)), 4<<10))))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for i, p := range pending {
		if _, err := p.Wait(ctx); err != nil {
			t.Fatalf("pipelined write %d: %v", i, err)
		}
	}
}
