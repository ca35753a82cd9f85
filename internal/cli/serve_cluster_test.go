package cli

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/grpcapi"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// clusterNode is varwatch serve --cluster running in-process, and a gRPC
// connection to it.
type clusterNode struct {
	*server
	api    pb.UnifiedBridgeClient
	health healthpb.HealthClient
}

func startClusterNode(t *testing.T, natsURL string, flags ...string) *clusterNode {
	t.Helper()
	s := startServer(t, append([]string{"--cluster", natsURL}, flags...)...)
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &clusterNode{server: s, api: pb.NewUnifiedBridgeClient(conn), health: healthpb.NewHealthClient(conn)}
	// Serving once caught up with the log.
	deadline := time.Now().Add(waitTimeout)
	for {
		r, err := n.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && r.Status == healthpb.HealthCheckResponse_SERVING {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s not SERVING: %v, %v", s.addr, r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// updates reads n value changes from a watch stream, skipping heartbeats
// and markers.
func updates(t *testing.T, w pb.UnifiedBridge_WatchVariablesClient, n int) []*pb.VariableUpdate {
	t.Helper()
	var got []*pb.VariableUpdate
	for len(got) < n {
		u, err := w.Recv()
		if err != nil {
			t.Fatalf("after %d updates: %v", len(got), err)
		}
		if u.GetUpdateType() == "value_change" {
			got = append(got, u)
		}
	}
	return got
}

// TestClusterServe runs three serve --cluster nodes over a 3-server
// JetStream cluster: writes on node A reach a watch on node B with the
// revisions A answered; the watch resumes on node C from its revision and
// incarnation with no gap; a session created again (the retry of a
// timed-out InitializeSession) on another node is not created twice; a
// write's position lets a local read on another node see it.
func TestClusterServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nats := natstest.Start(t, 3)
	a := startClusterNode(t, nats.URL())
	b := startClusterNode(t, nats.ServerURL(1))
	c := startClusterNode(t, nats.ServerURL(2))

	created, err := a.api.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"})
	if err != nil || !created.GetCreated() {
		t.Fatalf("create: %v, %v", created, err)
	}
	inc := created.GetSession().GetIncarnation()
	again, err := b.api.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"})
	if err != nil || again.GetCreated() || again.GetSession().GetIncarnation() != inc {
		t.Fatalf("the retried create on node b: %v, %v; want the session node a created (incarnation %s)", again, err, inc)
	}
	reg, err := a.api.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
		Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: 0}}})
	if err != nil {
		t.Fatal(err)
	}

	wctx, stopWatch := context.WithCancel(ctx)
	w, err := b.api.WatchVariables(wctx, &pb.WatchVariablesRequest{SessionId: "s", StartRevision: ptrTo(reg.GetRevision()), Incarnation: inc})
	if err != nil {
		t.Fatal(err)
	}
	var acked []int64
	var pos string
	for i := 1; i <= 10; i++ {
		var header metadata.MD
		res, err := a.api.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x",
			Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: int64(i)}}}, grpc.Header(&header))
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, res.GetRevision())
		if p := header.Get(grpcapi.MetadataPosition); len(p) == 1 {
			pos = p[0]
		}
	}
	if _, err := strconv.ParseUint(pos, 10, 64); err != nil {
		t.Fatalf("the set's header %s is %q", grpcapi.MetadataPosition, pos)
	}

	first := updates(t, w, 5)
	stopWatch()
	// Resume on node c from the last revision b delivered.
	last := first[len(first)-1].GetRevision()
	w2, err := c.api.WatchVariables(ctx, &pb.WatchVariablesRequest{SessionId: "s", StartRevision: ptrTo(last), Incarnation: inc})
	if err != nil {
		t.Fatal(err)
	}
	rest := updates(t, w2, 5)
	var got []int64
	for _, u := range append(first, rest...) {
		got = append(got, u.GetRevision())
		if u.GetIncarnation() != "" && u.GetIncarnation() != inc {
			t.Fatalf("an update of incarnation %s, want %s", u.GetIncarnation(), inc)
		}
	}
	for i := range acked {
		if got[i] != acked[i] {
			t.Fatalf("watches on b then c saw revisions %v; the sets on a were answered %v", got, acked)
		}
	}

	// A local read on b after waiting for the last set's position.
	rctx := metadata.AppendToOutgoingContext(ctx, grpcapi.MetadataConsistency, "local", grpcapi.MetadataPosition, pos)
	v, err := b.api.GetVariable(rctx, &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "x"})
	if err != nil || v.GetVariable().GetValue().GetIntegerValue() != 10 {
		t.Fatalf("local read on b at position %s: %v, %v", pos, v, err)
	}
	// A default (linearizable) read on c.
	v, err = c.api.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "x"})
	if err != nil || v.GetVariable().GetValue().GetIntegerValue() != 10 {
		t.Fatalf("linearizable read on c: %v, %v", v, err)
	}
	bad := metadata.AppendToOutgoingContext(ctx, grpcapi.MetadataConsistency, "sometimes")
	if _, err := c.api.GetVariable(bad, &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "x"}); reasonOf(err) != grpcapi.ReasonInvalidArgument {
		t.Fatalf("a read with consistency %q: %v", "sometimes", err)
	}
}

// A node started with --cluster-snapshot-every after a snapshot was
// stored starts from it, and serves what the other node wrote.
func TestClusterServeSnapshots(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nats := natstest.Start(t, 1)
	a := startClusterNode(t, nats.URL(), "--cluster-snapshot-every", "10")
	if _, err := a.api.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.api.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
		Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: 0}}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 25; i++ {
		if _, err := a.api.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x",
			Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: int64(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	a.stderr.waitFor(t, `"@message":"stored a snapshot"`)
	b := startClusterNode(t, nats.URL(), "--cluster-snapshot-every", "10")
	b.stderr.waitFor(t, `"@message":"loaded a snapshot"`)
	v, err := b.api.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "x"})
	if err != nil || v.GetVariable().GetValue().GetIntegerValue() != 25 || v.GetVariable().GetVersion() != 26 {
		t.Fatalf("the node started from a snapshot reads %v, %v", v, err)
	}
}

// A node with --data-dir saves its snapshot when it stops and starts from
// it again.
func TestClusterServeDataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nats := natstest.Start(t, 1)
	dir := t.TempDir()
	a := startClusterNode(t, nats.URL(), "--data-dir", dir)
	if _, err := a.api.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	if code := Run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--cluster", nats.URL(), "--data-dir", dir}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "is locked") {
		t.Fatalf("a second node on the same --data-dir: exit %d, %q; want 1 and the directory locked", code, stderr.String())
	}
	a.stop(t)
	a.stderr.waitFor(t, `"@message":"saved the local snapshot"`)
	b := startClusterNode(t, nats.URL(), "--data-dir", dir)
	b.stderr.waitFor(t, `"@message":"loaded the local snapshot"`)
	if _, err := b.api.GetSession(ctx, &pb.GetSessionRequest{SessionId: "s"}); err != nil {
		t.Fatalf("the restarted node: %v", err)
	}
}

func TestClusterServeFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--cluster-snapshot-every", "5"}, "the --cluster-* flags need --cluster"},
		{[]string{"--cluster", "nats://127.0.0.1:1", "--cluster-snapshot-every", "-1"}, "--cluster-snapshot-every must not be negative"},
		{[]string{"--cluster", "nats://127.0.0.1:1", "--cluster-snapshots-kept", "1"}, "--cluster-snapshots-kept must be at least 2"},
		{[]string{"--cluster", "nats://127.0.0.1:1", "--data-dir", "x", "--fsync", "none"}, "a node of a cluster keeps no log of its own"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Run(context.Background(), append([]string{"serve", "--listen", "127.0.0.1:0"}, tc.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.msg)
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

// reasonOf is the ErrorInfo reason of a status error, or "".
func reasonOf(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}
