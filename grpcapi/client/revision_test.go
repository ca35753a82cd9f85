package client

import (
	"context"
	"testing"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// TestRevisionCountsWhatNextReturned: Revision says what the caller has,
// not what the watch has received. One receive can bring many updates (a
// multiplexed stream hands over everything queued for the watch), and a
// heartbeat at its end covers them only once they are returned; the old
// Revision claimed it at once, and a caller that saved it would resume
// past the updates still waiting in Next.
func TestRevisionCountsWhatNextReturned(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	change := func(rev int64, id string) *pb.VariableUpdate {
		return &pb.VariableUpdate{UpdateType: "value_change", Revision: rev, VariableId: id}
	}
	batches := [][]*pb.VariableUpdate{{
		{UpdateType: "heartbeat", Revision: 4},
		change(5, "a"), change(6, "a"), change(6, "b"), change(7, "a"),
		{UpdateType: "heartbeat", Revision: 9},
	}}
	w := &Watch{ctx: ctx, cancel: cancel, req: &pb.WatchVariablesRequest{SessionId: "s"}}
	w.recv = func() ([]*pb.VariableUpdate, error) {
		b := batches[0]
		batches = batches[1:]
		return b, nil
	}
	// After each Next: 5 alone may be a partial revision until 6 shows
	// up; 6 until 7; the heartbeat at 9 covers 7 once 7 is returned.
	for i, want := range []int64{4, 5, 5, 9} {
		if _, err := w.Next(); err != nil {
			t.Fatal(err)
		}
		if got := w.Revision(); got != want {
			t.Fatalf("after update %d: Revision %d, want %d", i, got, want)
		}
	}
}

// BenchmarkWatchNext is what Next costs per update on the client, past the
// transport: one change per revision, as a fan-out watcher mostly sees.
//
//	go test -run '^$' -bench WatchNext -benchmem ./grpcapi/client
func BenchmarkWatchNext(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batch := make([]*pb.VariableUpdate, 256)
	rev := int64(0)
	w := &Watch{ctx: ctx, cancel: cancel, req: &pb.WatchVariablesRequest{SessionId: "s"}, started: true}
	w.recv = func() ([]*pb.VariableUpdate, error) {
		for i := range batch {
			rev++
			batch[i] = &pb.VariableUpdate{UpdateType: "value_change", Revision: rev, VariableId: "1"}
		}
		return batch, nil
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
