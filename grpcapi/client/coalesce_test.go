package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// TestCoalescedCountsAddUpAfterAResume: a coalescing watch whose stream
// drops right after its first change resumes from the revision before it
// (the change might be one of an atomic set received in part); the
// server's replay must not merge that change, which the client already
// had, into the later ones, or the counts add up to more than the writes.
func TestCoalescedCountsAddUpAfterAResume(t *testing.T) {
	for _, batched := range []bool{false, true} {
		name := "unbatched"
		if batched {
			name = "batched"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			addr := startServer(t, engine.Config{})
			px := newProxy(t, addr)
			direct, err := client.New(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer direct.Close()
			viaProxy, err := client.New(px.lis.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer viaProxy.Close()
			if _, err := direct.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
				t.Fatal(err)
			}
			if _, err := direct.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
				Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: intValue(0)}); err != nil {
				t.Fatal(err)
			}
			set := func(v int64) {
				t.Helper()
				if _, err := direct.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: intValue(v)}); err != nil {
					t.Fatal(err)
				}
			}

			// No heartbeats (the default interval is 30s): nothing vouches
			// that the first change's revision is complete.
			w := viaProxy.Watch(ctx, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"},
				IncludeInitialValues: true, Coalesce: true}, client.WatchOptions{Batched: batched, MaxBackoff: time.Millisecond})
			defer w.Close()
			for {
				up, err := w.Next()
				if err != nil {
					t.Fatal(err)
				}
				if up.GetUpdateType() == "initial_values_complete" {
					break
				}
			}
			const writes = 3
			set(1)
			first, err := w.Next()
			if err != nil || first.GetUpdateType() != "value_change" {
				t.Fatalf("first change: %v, %v", first, err)
			}
			px.drop() // the watch reads nothing until the next Next
			for v := int64(2); v <= writes; v++ {
				set(v)
			}
			counts := []int64{max(first.GetCoalescedCount(), 1)}
			total := counts[0]
			var last *pb.VariableUpdate
			for total < writes {
				up, err := w.Next()
				if err != nil {
					t.Fatal(err)
				}
				if up.GetUpdateType() != "value_change" {
					continue
				}
				last = up
				counts = append(counts, max(up.GetCoalescedCount(), 1))
				total += counts[len(counts)-1]
			}
			if total != writes {
				t.Fatalf("coalesced counts %v add up to %d for %d writes", counts, total, writes)
			}
			if last.GetVariable().GetValue().GetIntegerValue() != writes {
				t.Fatalf("last value %v, want %d", last.GetVariable().GetValue(), writes)
			}
			if w.Resumes() == 0 {
				t.Fatal("the watch never resumed: the test did not test a resume")
			}
		})
	}
}
