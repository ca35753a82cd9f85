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

	"github.com/varwatch/varwatch/cluster"
	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// serveNode starts a node of the cluster at natsURL behind a gRPC server,
// as serve --cluster wires it, and returns a client of it.
func serveNode(t *testing.T, natsURL string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cluster.Start(ctx, cluster.Config{URL: natsURL, PublishTimeout: time.Second}, engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.Ready():
	case <-ctx.Done():
		t.Fatal("the node did not catch up")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpcapi.ServerOption())
	grpcapi.Register(gs, grpcapi.New(grpcapi.Config{Backend: grpcapi.Clustered(n.Engine, n)}))
	go func() { _ = gs.Serve(lis) }()
	c, err := client.New(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); gs.Stop(); n.Close() })
	return c
}

func integer(v int64) *pb.Value { return &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: v}} }

// TestConsistencyOptions: on a cluster, WritePosition gives every write's
// log position (increasing); a local read at that position on another
// node sees the write; a position the log has not reached holds a read
// and a watch back; and with JetStream unreachable, default reads fail
// CLUSTER_UNAVAILABLE while local reads and local watches are answered.
func TestConsistencyOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nats := natstest.Start(t, 1)
	a, b := serveNode(t, nats.URL()), serveNode(t, nats.URL())

	var created, registered, set uint64
	if _, err := a.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}, client.WritePosition(&created)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
		Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: integer(0)}, client.WritePosition(&registered)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: integer(1)},
		client.WritePosition(&set)); err != nil {
		t.Fatal(err)
	}
	if created == 0 || registered <= created || set <= registered {
		t.Fatalf("write positions %d, %d, %d: want increasing, from 1", created, registered, set)
	}

	get := &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "x"}
	v, err := b.GetVariable(ctx, get, client.AtPosition(set), client.LocalRead())
	if err != nil || v.GetVariable().GetValue().GetIntegerValue() != 1 {
		t.Fatalf("a local read on b at position %d: %v, %v", set, v, err)
	}

	// A position the log has not reached: the read, and the watch, wait.
	short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = b.GetVariable(short, get, client.AtPosition(set+1000), client.LocalRead())
	stop()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a read at a position not reached: %v; want it to wait until its deadline", err)
	}
	short, stop = context.WithTimeout(ctx, 200*time.Millisecond)
	w := b.Watch(short, &pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: true},
		client.WatchOptions{Position: set + 1000, Local: true})
	_, err = w.Next()
	w.Close()
	stop()
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a watch at a position not reached: %v; want it to wait until its deadline", err)
	}

	// JetStream down: only local reads and watches are answered.
	nats.Kill(0)
	if _, err := b.GetVariable(ctx, get); status.Code(err) != codes.Unavailable {
		t.Fatalf("a default read with JetStream down: %v; want UNAVAILABLE", err)
	} else if reason, _ := client.Reason(err); reason != grpcapi.ReasonClusterUnavailable {
		t.Fatalf("a default read with JetStream down: reason %q", reason)
	}
	v, err = b.GetVariable(ctx, get, client.LocalRead())
	if err != nil || v.GetVariable().GetValue().GetIntegerValue() != 1 {
		t.Fatalf("a local read with JetStream down: %v, %v", v, err)
	}
	w = b.Watch(ctx, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"}, IncludeInitialValues: true},
		client.WatchOptions{Local: true, MaxAttempts: 1})
	defer w.Close()
	up, err := w.Next()
	if err != nil || up.GetUpdateType() != "initial_value" || up.GetVariable().GetValue().GetIntegerValue() != 1 {
		t.Fatalf("a local watch with JetStream down: %v, %v", up, err)
	}
}

// On a single server a write gives no position, and the read options
// change nothing.
func TestConsistencyOptionsSingleServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := serveWith(t, grpcapi.Config{})
	pos := uint64(99)
	if _, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}, client.WritePosition(&pos)); err != nil || pos != 0 {
		t.Fatalf("a write on one server: position %d, %v; want 0", pos, err)
	}
	if _, err := c.GetSession(ctx, &pb.GetSessionRequest{SessionId: "s"}, client.AtPosition(5), client.LocalRead()); err != nil {
		t.Fatalf("a read with the cluster's options on one server: %v", err)
	}
}

// A Writer's acks from a node of a cluster carry a log position, with
// small acks and full ones, that never goes back; a local read on another
// node at a write's position sees it. From one server the position is 0.
func TestWriterAcksCarryPositions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nats := natstest.Start(t, 1)
	a, b := serveNode(t, nats.URL()), serveNode(t, nats.URL())
	if _, err := a.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	for _, full := range []bool{false, true} {
		w, err := a.Writer(ctx, "s", client.WriterOptions{FullAcks: full, Upsert: true})
		if err != nil {
			t.Fatal(err)
		}
		var pending []*client.Pending
		for i := range 200 {
			pending = append(pending, w.Set("x", integer(int64(i))))
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		var last uint64
		for i, p := range pending {
			ack, err := p.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ack.Position == 0 || ack.Position < last {
				t.Fatalf("full acks %v: write %d's position %d after %d; want increasing from 1", full, i, ack.Position, last)
			}
			last = ack.Position
		}
		w.Close()
		v, err := b.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "x"},
			client.AtPosition(last), client.LocalRead())
		if err != nil || v.GetVariable().GetValue().GetIntegerValue() != 199 {
			t.Fatalf("full acks %v: a local read on b at the last ack's position %d: %v, %v", full, last, v, err)
		}
	}

	one := serveWith(t, grpcapi.Config{})
	if _, err := one.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	w, err := one.Writer(ctx, "s", client.WriterOptions{Upsert: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if ack, err := w.Set("x", integer(1)).Wait(ctx); err != nil || ack.Position != 0 {
		t.Fatalf("a Writer's ack from one server: position %d, %v; want 0", ack.Position, err)
	}
}
