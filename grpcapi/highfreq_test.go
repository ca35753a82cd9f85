package grpcapi

import (
	"strconv"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// errorInfo returns the ErrorInfo detail of a status error, or fails.
func errorInfo(t *testing.T, err error) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	t.Fatalf("no ErrorInfo in %v", err)
	return nil
}

func TestWatchResumeOverGRPC(t *testing.T) {
	h := newHarness(t, harnessOptions{engine: engine.Config{HistoryRevisions: 5}})
	h.createSession("s")
	h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil) // revision 1
	for i := int64(1); i <= 9; i++ {                                          // revisions 2..10
		h.set("s", "a", intV(i))
	}
	// Resume from 7: revisions 8, 9, 10 replayed, then live.
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"a"}, StartRevision: proto.Int64(7)})
	if u := w.next(); u.GetUpdateType() != "heartbeat" || u.GetRevision() != 7 {
		t.Fatalf("first update %v, want a heartbeat at the start revision", u)
	}
	for rev := int64(8); rev <= 10; rev++ {
		wantUpdate(t, w.nextData(), "value_change", "a", rev)
	}
	h.set("s", "a", intV(10))
	wantUpdate(t, w.nextData(), "value_change", "a", 11)

	// Too old: OUT_OF_RANGE, naming the oldest revision one can resume from.
	err := h.watchErr(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(2)})
	wantCode(t, err, codes.OutOfRange)
	info := errorInfo(t, err)
	if info.GetReason() != ReasonCompacted || info.GetMetadata()["compacted_revision"] != "6" {
		t.Fatalf("compacted detail %v", info)
	}
}

func TestWatchSlowConsumerNamesResumeRevision(t *testing.T) {
	h := newHarness(t, harnessOptions{engine: engine.Config{SubscriptionBuffer: 4}})
	h.createSession("s")
	h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
	// A raw stream that does not read: the server cannot send, the engine
	// buffer fills, and the stream is cut off.
	stream, err := h.client.WatchVariables(h.ctx(), &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	for i := int64(1); ; i++ {
		h.set("s", "a", intV(i))
		subs := h.backend.subscriptions()
		if len(subs) == 1 && subs[0].Err() != nil {
			break
		}
		if i > 1_000_000 {
			t.Fatal("never cut off")
		}
	}
	var last int64
	for {
		u, err := stream.Recv()
		if err != nil {
			wantCode(t, err, codes.ResourceExhausted)
			info := errorInfo(t, err)
			if info.GetReason() != ReasonSlowConsumer || info.GetMetadata()["resume_revision"] != strconv.FormatInt(last, 10) {
				t.Fatalf("detail %v, want resume_revision %d", info, last)
			}
			return
		}
		last = u.GetRevision()
	}
}

func TestWatchCoalescedBatches(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
	h.register("s", "b", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
	// A long linger window: everything written inside it merges.
	w := h.watchBatched(&pb.WatchVariablesRequest{SessionId: "s", Coalesce: true,
		MaxBatchDelay: durationpb.New(time.Second), HeartbeatInterval: durationpb.New(time.Hour)})
	const writes = 50
	for i := int64(1); i <= writes; i++ {
		h.set("s", "a", intV(i))
		h.set("s", "b", intV(-i))
	}
	counts := map[string]int64{}
	latest := map[string]int64{}
	var lastRev int64
	for counts["a"] < writes || counts["b"] < writes {
		u := w.next()
		if u.GetUpdateType() != "value_change" {
			t.Fatalf("unexpected %v", u)
		}
		if u.GetRevision() <= lastRev {
			t.Fatalf("revision %d after %d", u.GetRevision(), lastRev)
		}
		lastRev = u.GetRevision()
		name := u.GetVariable().GetName()
		counts[name] += max(u.GetCoalescedCount(), 1)
		latest[name] = u.GetVariable().GetValue().GetIntegerValue()
	}
	if counts["a"] != writes || counts["b"] != writes || latest["a"] != writes || latest["b"] != -writes {
		t.Fatalf("counts %v latest %v", counts, latest)
	}
	updates := 0
	for _, b := range w.received() {
		updates += len(b.GetUpdates())
	}
	t.Logf("%d writes arrived as %d updates in %d messages", 2*writes, updates, len(w.received()))
	if updates >= 2*writes {
		t.Errorf("nothing was coalesced: %d updates for %d writes", updates, 2*writes)
	}
}
