package cli

import (
	"context"
	"testing"
	"time"

	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/grpcapi"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// TestClusterServeResumeReplaysTheStream: two serve --cluster nodes that
// keep 4 revisions of history and snapshot every 20 positions, 2 kept. A
// watch on node a stops at revision R; 19 writes later, it resumes on
// node b from R, older than b's history: b replays the stream and the
// watch gets every change after R exactly once, in order, then the live
// ones. A resume from before the stream's first retained position (once
// it is trimmed behind its two snapshots) is OUT_OF_RANGE
// REVISION_COMPACTED.
func TestClusterServeResumeReplaysTheStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nats := natstest.Start(t, 1)
	flags := []string{"--history-revisions", "4", "--cluster-snapshot-every", "20", "--cluster-snapshots-kept", "2"}
	a := startClusterNode(t, nats.URL(), flags...)
	b := startClusterNode(t, nats.URL(), flags...)
	created, err := a.api.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"})
	if err != nil {
		t.Fatal(err)
	}
	inc := created.GetSession().GetIncarnation()
	reg, err := a.api.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
		Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	value := map[int64]int64{} // by revision
	set := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			res, err := a.api.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x",
				Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: int64(i)}}})
			if err != nil {
				t.Fatal(err)
			}
			value[res.GetRevision()] = int64(i)
		}
	}
	check := func(got []*pb.VariableUpdate, from int64) int64 {
		t.Helper()
		for _, u := range got {
			from++
			if u.GetRevision() != from || u.GetVariable().GetValue().GetIntegerValue() != value[from] {
				t.Fatalf("got revision %d = %d, want revision %d = %d", u.GetRevision(), u.GetVariable().GetValue().GetIntegerValue(), from, value[from])
			}
		}
		return from
	}

	wctx, stopWatch := context.WithCancel(ctx)
	w, err := a.api.WatchVariables(wctx, &pb.WatchVariablesRequest{SessionId: "s", StartRevision: ptrTo(reg.GetRevision()), Incarnation: inc})
	if err != nil {
		t.Fatal(err)
	}
	set(1, 24) // the stream's positions 3 to 26: past the snapshot at 20
	r := check(updates(t, w, 24), reg.GetRevision())
	stopWatch()
	set(25, 43) // a snapshot at 40: the stream is trimmed up to 20

	// Once the stream is trimmed, a resume from the registration (at
	// position 2) is compacted; before, the replay serves it.
	deadline := time.Now().Add(waitTimeout)
	for {
		octx, stop := context.WithCancel(ctx)
		old, err := b.api.WatchVariables(octx, &pb.WatchVariablesRequest{SessionId: "s", StartRevision: ptrTo(reg.GetRevision()), Incarnation: inc})
		if err == nil {
			_, err = old.Recv()
		}
		stop()
		if reasonOf(err) == grpcapi.ReasonCompacted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a resume from revision %d after the trim: %v, want %s", reg.GetRevision(), err, grpcapi.ReasonCompacted)
		}
		time.Sleep(20 * time.Millisecond)
	}

	w2, err := b.api.WatchVariables(ctx, &pb.WatchVariablesRequest{SessionId: "s", StartRevision: ptrTo(r), Incarnation: inc})
	if err != nil {
		t.Fatal(err)
	}
	last := check(updates(t, w2, 19), r)
	set(44, 46)
	check(updates(t, w2, 3), last)
}
