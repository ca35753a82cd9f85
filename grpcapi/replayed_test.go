package grpcapi

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// fakeReplay is a ReplayFunc that records what it was asked and answers
// with answer.
type fakeReplay struct {
	mu     sync.Mutex
	asked  []engine.WatchRequest
	answer func(ctx context.Context, req engine.WatchRequest) (ReplayedWatch, error)
}

func (f *fakeReplay) replay(ctx context.Context, req engine.WatchRequest) (ReplayedWatch, error) {
	f.mu.Lock()
	f.asked = append(f.asked, req)
	f.mu.Unlock()
	return f.answer(ctx, req)
}

func (f *fakeReplay) calls() []engine.WatchRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]engine.WatchRequest(nil), f.asked...)
}

// TestWithReplay: a Backend WithReplay asks for a replay only for a resume
// the engine refused as compacted, streams what the replay gives, and
// answers the engine's own REVISION_COMPACTED when the replay cannot reach
// back either; a replay that fails otherwise ends the watch with its own
// status.
func TestWithReplay(t *testing.T) {
	f := &fakeReplay{}
	h := newHarness(t, harnessOptions{engine: engine.Config{HistoryRevisions: 3}, config: func(c *Config) {
		c.Backend = WithReplay(c.Backend, f.replay)
	}})
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
	var revs []int64
	for i := 1; i <= 6; i++ {
		revs = append(revs, h.set("s", "x", intV(int64(i))).GetRevision())
	}
	last := revs[len(revs)-1]

	// Held by the history: no replay.
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(last - 1)})
	if u := w.nextData(); u.GetRevision() != last {
		t.Fatalf("resume from %d: first change at %d, want %d", last-1, u.GetRevision(), last)
	}
	if n := len(f.calls()); n != 0 {
		t.Fatalf("a resume the history holds asked for %d replays", n)
	}

	// Compacted: the replay serves it (here, from the live engine: what
	// the stream would add is package cluster's to test).
	f.answer = func(ctx context.Context, req engine.WatchRequest) (ReplayedWatch, error) {
		return h.eng.Watch(ctx, engine.WatchRequest{Session: req.Session})
	}
	w = h.watch(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(revs[0])})
	if got := f.calls(); len(got) != 1 || !got[0].Resume || got[0].StartRevision != revs[0] || got[0].Session != "s" {
		t.Fatalf("replays asked: %+v, want one resume of s from %d", got, revs[0])
	}
	res := h.set("s", "x", intV(7))
	if u := w.nextData(); u.GetRevision() != res.GetRevision() {
		t.Fatalf("the replayed watch got revision %d, want %d", u.GetRevision(), res.GetRevision())
	}

	// The replay cannot reach back: the engine's own answer stands.
	f.answer = func(context.Context, engine.WatchRequest) (ReplayedWatch, error) {
		return nil, fmt.Errorf("%w: the stream starts later", engine.ErrCompacted)
	}
	err := h.watchErr(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(revs[0])})
	wantReason(t, err, ReasonCompacted, map[string]string{"requested_revision": strconv.FormatInt(revs[0], 10), "compacted_revision": ""})

	// Any other failure is its own.
	f.answer = func(context.Context, engine.WatchRequest) (ReplayedWatch, error) {
		return nil, fmt.Errorf("%w: no stream", engine.ErrLogUnavailable)
	}
	err = h.watchErr(&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(revs[0])})
	wantReason(t, err, ReasonClusterUnavailable, nil)
}
