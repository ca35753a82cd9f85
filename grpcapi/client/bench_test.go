package client_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// BenchmarkDelivery measures how many changes per second one watch stream
// delivers over loopback gRPC, per-update vs batched vs coalesced, with the
// writes made in-process so the stream path is what is measured:
//
//	go test -run XXX -bench Delivery -benchtime 2000000x ./grpcapi/client
//
// changes/s counts the changes the client learned of (a coalesced update
// stands for several); msgs/s counts gRPC messages received.
func BenchmarkDelivery(b *testing.B) {
	for _, mode := range []struct {
		name     string
		batched  bool
		coalesce bool
	}{
		{"per-update", false, false},
		{"batched", true, false},
		{"coalesced", true, true},
	} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			eng := engine.New(engine.Config{SubscriptionBuffer: 1 << 22})
			defer eng.Close()
			gs := grpc.NewServer()
			grpcapi.Register(gs, grpcapi.New(grpcapi.Config{Backend: eng}))
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = gs.Serve(lis) }()
			defer gs.Stop()
			c, err := client.New(lis.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()

			if _, _, err := eng.CreateSession(ctx, engine.CreateSessionRequest{ID: "bench"}); err != nil {
				b.Fatal(err)
			}
			const vars = 100
			for i := range vars {
				if _, err := eng.Register(ctx, engine.RegisterRequest{Session: "bench", Name: fmt.Sprintf("v%d", i), Type: engine.TypeFloat, Value: engine.Float(0)}); err != nil {
					b.Fatal(err)
				}
			}
			req := &pb.WatchVariablesRequest{SessionId: "bench", Pattern: "*", Coalesce: mode.coalesce}
			var recv func() ([]*pb.VariableUpdate, error)
			if mode.batched {
				s, err := c.WatchVariablesBatched(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				recv = func() ([]*pb.VariableUpdate, error) { m, err := s.Recv(); return m.GetUpdates(), err }
			} else {
				s, err := c.WatchVariables(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				recv = func() ([]*pb.VariableUpdate, error) { m, err := s.Recv(); return []*pb.VariableUpdate{m}, err }
			}

			// The watch is registered when the server's handler runs, not
			// when the call returns: wait for its greeting heartbeat, or
			// the first writes would happen before it and go unseen.
			if ups, err := recv(); err != nil || ups[0].GetUpdateType() != "heartbeat" {
				b.Fatalf("first message: %v, %v; want a heartbeat", ups, err)
			}

			writes := b.N
			b.ResetTimer()
			start := time.Now()
			go func() { // one writer, 100 non-atomic sets per call: one revision each
				sets := make([]engine.SetRequest, vars)
				for done := 0; done < writes; done += vars {
					for i := range sets {
						sets[i] = engine.SetRequest{Variable: fmt.Sprintf("v%d", i), Value: engine.Float(float64(done + i))}
					}
					if n := writes - done; n < vars {
						sets = sets[:n]
					}
					if _, err := eng.SetMany(ctx, engine.SetManyRequest{Session: "bench", Sets: sets}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
			var changes, msgs, last int64
			final := int64(vars + writes)
			for last < final {
				ups, err := recv()
				if err != nil {
					b.Fatal(err)
				}
				msgs++
				for _, up := range ups {
					if up.GetUpdateType() != "value_change" {
						continue
					}
					// Every revision is one write: without coalescing they
					// must arrive consecutively, so a gap is caught where it
					// happens, not only in the final count.
					if r := up.GetRevision(); r <= last || (!mode.coalesce && r != max(last, vars)+1) {
						b.Fatalf("revision %d after %d (message %d)", r, last, msgs)
					}
					last = up.GetRevision()
					changes += max(up.GetCoalescedCount(), 1)
				}
			}
			elapsed := time.Since(start).Seconds()
			b.StopTimer()
			if changes != int64(writes) {
				b.Fatalf("learned of %d changes, want %d", changes, writes)
			}
			b.ReportMetric(float64(changes)/elapsed, "changes/s")
			b.ReportMetric(float64(msgs)/elapsed, "msgs/s")
		})
	}
}
