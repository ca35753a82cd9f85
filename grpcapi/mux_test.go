package grpcapi

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// muxStream is the client side of one Watch stream: a goroutine reads the
// responses and hands each watch its events, as the real clients do.
type muxStream struct {
	t      *testing.T
	stream pb.UnifiedBridge_WatchClient
	cancel context.CancelFunc
	sendMu sync.Mutex

	mu     sync.Mutex
	chans  map[int64]chan *pb.WatchEvent
	shared int // entries that carried more than one watch id
	done   chan struct{}
	err    error // the stream's end; written before done is closed
	// slow, when set, makes the reader pause after each response: a
	// client that falls behind.
	slow time.Duration
}

// muxWatcher is one watch of a muxStream.
type muxWatcher struct {
	m  *muxStream
	id int64
	ch chan *pb.WatchEvent
}

func (h *harness) openMux() *muxStream { return h.openMuxSlow(0) }

func (h *harness) openMuxSlow(slow time.Duration) *muxStream {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := h.client.Watch(ctx)
	if err != nil {
		cancel()
		h.t.Fatalf("Watch: %v", err)
	}
	m := &muxStream{t: h.t, stream: stream, cancel: cancel, chans: map[int64]chan *pb.WatchEvent{}, done: make(chan struct{}), slow: slow}
	go m.read()
	h.t.Cleanup(func() {
		cancel()
		<-m.done
	})
	return m
}

func (m *muxStream) read() {
	defer close(m.done)
	for {
		resp, err := m.stream.Recv()
		if err != nil {
			if err != io.EOF {
				m.err = err
			}
			return
		}
		m.mu.Lock()
		for _, ev := range resp.GetEvents() {
			if len(ev.GetWatchIds()) > 1 {
				m.shared++
			}
			for _, id := range ev.GetWatchIds() {
				ch := m.chans[id]
				if ch == nil {
					m.mu.Unlock()
					m.err = status.Errorf(codes.Internal, "an event for watch %d, which the client never created: %v", id, ev)
					return
				}
				ch <- ev
			}
		}
		m.mu.Unlock()
		if m.slow > 0 {
			time.Sleep(m.slow)
		}
	}
}

func (m *muxStream) send(req *pb.WatchRequest) error {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	return m.stream.Send(req)
}

// create starts watch id on the stream.
func (m *muxStream) create(id int64, req *pb.WatchVariablesRequest, view pb.View) *muxWatcher {
	m.t.Helper()
	w := &muxWatcher{m: m, id: id, ch: make(chan *pb.WatchEvent, 1<<16)}
	m.mu.Lock()
	m.chans[id] = w.ch
	m.mu.Unlock()
	if err := m.send(&pb.WatchRequest{Request: &pb.WatchRequest_Create{Create: &pb.WatchCreate{WatchId: id, Request: req, View: view}}}); err != nil {
		m.t.Fatalf("create %d: %v", id, err)
	}
	return w
}

func (w *muxWatcher) cancel() {
	w.m.t.Helper()
	if err := w.m.send(&pb.WatchRequest{Request: &pb.WatchRequest_Cancel{Cancel: &pb.WatchCancel{WatchId: w.id}}}); err != nil {
		w.m.t.Fatalf("cancel %d: %v", w.id, err)
	}
}

// next returns the watch's next event, failing if none comes.
func (w *muxWatcher) next() *pb.WatchEvent {
	w.m.t.Helper()
	select {
	case ev := <-w.ch:
		return ev
	case <-time.After(waitTimeout):
		w.m.t.Fatalf("watch %d: timed out waiting for an event", w.id)
	case <-w.m.done:
		select {
		case ev := <-w.ch:
			return ev
		default:
		}
		w.m.t.Fatalf("watch %d: stream ended (%v) while an event was expected", w.id, w.m.err)
	}
	return nil
}

// nextUpdate is next, skipping heartbeats, and failing on anything but
// an update.
func (w *muxWatcher) nextUpdate() *pb.VariableUpdate {
	w.m.t.Helper()
	for {
		ev := w.next()
		u := ev.GetUpdate()
		if u == nil {
			w.m.t.Fatalf("watch %d: got %v, want an update", w.id, ev)
		}
		if u.GetUpdateType() != "heartbeat" {
			return u
		}
	}
}

// ended skips updates until the watch's WatchEnded and returns it.
func (w *muxWatcher) ended() *pb.WatchEnded {
	w.m.t.Helper()
	for {
		if e := w.next().GetEnded(); e != nil {
			return e
		}
	}
}

// created waits for the watch's WatchCreated.
func (w *muxWatcher) created() *pb.WatchCreated {
	w.m.t.Helper()
	ev := w.next()
	if ev.GetCreated() == nil {
		w.m.t.Fatalf("watch %d: first event %v, want created", w.id, ev)
	}
	return ev.GetCreated()
}

func wantEnded(t *testing.T, e *pb.WatchEnded, code codes.Code, reason string) {
	t.Helper()
	if codes.Code(e.GetCode()) != code || e.GetReason() != reason {
		t.Fatalf("ended %v, want code %v reason %q", e, code, reason)
	}
}

// TestMuxWatch: watches come and go on one stream, each with the
// semantics of its own WatchVariables stream, and a refused one ends with
// its status as data while the others go on.
func TestMuxWatch(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	info, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: "s"})
	if err != nil {
		t.Fatal(err)
	}
	inc := info.GetSession().GetIncarnation()
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), nil)
	h.register("s", "y", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(2), nil)
	m := h.openMux()

	x := m.create(1, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"}, IncludeInitialValues: true}, 0)
	all := m.create(2, &pb.WatchVariablesRequest{SessionId: "s"}, 0)
	if c := x.created(); c.GetSnapshotRevision() != 2 || c.GetIncarnation() != inc {
		t.Fatalf("created %v, want snapshot 2 and incarnation %s", c, inc)
	}
	wantUpdate(t, x.next().GetUpdate(), "initial_value", "x", 2)
	if u := x.next().GetUpdate(); u.GetUpdateType() != "initial_values_complete" || u.GetIncarnation() != inc {
		t.Fatalf("got %v, want initial_values_complete", u)
	}
	all.created()
	if u := all.next().GetUpdate(); u.GetUpdateType() != "heartbeat" || u.GetRevision() != 2 {
		t.Fatalf("got %v, want the greeting heartbeat at 2", u)
	}

	h.set("s", "x", floatV(3))
	wantUpdate(t, x.nextUpdate(), "value_change", "x", 3)
	wantUpdate(t, all.nextUpdate(), "value_change", "x", 3)
	x.cancel()
	wantEnded(t, x.ended(), codes.Canceled, ReasonWatchCancelled)
	h.set("s", "x", floatV(4))
	h.set("s", "y", floatV(5))
	wantUpdate(t, all.nextUpdate(), "value_change", "x", 4)
	wantUpdate(t, all.nextUpdate(), "value_change", "y", 5)

	// Refused creates end with their status; the stream goes on.
	for _, tc := range []struct {
		req    *pb.WatchVariablesRequest
		code   codes.Code
		reason string
	}{
		{&pb.WatchVariablesRequest{SessionId: "nope"}, codes.NotFound, ReasonSessionNotFound},
		{&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"nope"}}, codes.NotFound, ReasonVariableNotFound},
		{&pb.WatchVariablesRequest{SessionId: "s", MaxBatchSize: 10}, codes.InvalidArgument, ReasonInvalidArgument},
		{&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(1), Incarnation: "0000000000000000"}, codes.FailedPrecondition, ReasonIncarnationChanged},
		{&pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(99)}, codes.InvalidArgument, ReasonInvalidArgument},
		{nil, codes.InvalidArgument, ReasonInvalidArgument},
	} {
		w := m.create(10, tc.req, 0)
		wantEnded(t, w.next().GetEnded(), tc.code, tc.reason)
	}

	// An id is free again once its watch ended: x resumes from 3.
	again := m.create(1, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"}, StartRevision: proto.Int64(3), Incarnation: inc}, 0)
	again.created()
	wantUpdate(t, again.nextUpdate(), "value_change", "x", 4)

	// The session's end: session_closed, then ended with OK.
	if _, err := h.client.CleanupSession(h.ctx(), &pb.CleanupSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*muxWatcher{again, all} {
		if u := w.nextUpdate(); u.GetUpdateType() != "session_closed" {
			t.Fatalf("watch %d got %v, want session_closed", w.id, u)
		}
		wantEnded(t, w.next().GetEnded(), codes.OK, "")
	}

	// A live id again fails the stream.
	h.createSession("t")
	m.create(5, &pb.WatchVariablesRequest{SessionId: "t"}, 0).created()
	m.create(5, &pb.WatchVariablesRequest{SessionId: "t"}, 0)
	<-m.done
	if status.Code(m.err) != codes.InvalidArgument {
		t.Fatalf("stream ended with %v, want INVALID_ARGUMENT for a reused live id", m.err)
	}
	waitFor(t, "the stream's watches to be released", func() bool {
		if h.srv.ActiveStreams() != 0 {
			return false
		}
		for _, sub := range h.backend.subscriptions() {
			if sub.Err() == nil {
				return false
			}
		}
		return true
	})
}

// TestMuxValueView: a VALUE watch gets no constraints, metadata or
// creation fields; a FULL watch of the same change gets them.
func TestMuxValueView(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), &pb.Constraints{Min: proto.Float64(0)})
	m := h.openMux()
	full := m.create(1, &pb.WatchVariablesRequest{SessionId: "s"}, pb.View_VIEW_FULL)
	slim := m.create(2, &pb.WatchVariablesRequest{SessionId: "s"}, pb.View_VIEW_VALUE)
	full.created()
	slim.created()
	if _, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x", Value: floatV(2),
		Source: "me", Metadata: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	f, v := full.nextUpdate(), slim.nextUpdate()
	if f.GetVariable().GetConstraints() == nil || f.GetUpdateMetadata()["k"] != "v" || f.GetVariable().GetCreatedAt() == nil {
		t.Fatalf("FULL update %v lacks fields", f)
	}
	want := &pb.VariableUpdate{VariableId: "1", Variable: &pb.Variable{Id: "1", Name: "x", Type: pb.VariableType_VARIABLE_TYPE_FLOAT,
		Value: floatV(2), Version: 2, ModRevision: 2}, OldValue: floatV(1), UpdateSource: "me", Timestamp: v.GetTimestamp(),
		UpdateType: "value_change", Revision: 2}
	if !proto.Equal(v, want) {
		t.Fatalf("VALUE update\n%v\nwant\n%v", v, want)
	}
}

// TestMuxSlowConsumerEndsOneWatch: a watch that falls behind is cut off
// with SLOW_CONSUMER and its resume revision; the stream's other watches
// go on.
func TestMuxSlowConsumerEndsOneWatch(t *testing.T) {
	h := newHarness(t, harnessOptions{engine: engine.Config{SubscriptionBuffer: 8}})
	h.createSession("s")
	var updates []*pb.SetVariableRequest
	for i := range 20 {
		name := fmt.Sprintf("x%d", i)
		h.register("s", name, pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
		updates = append(updates, &pb.SetVariableRequest{VariableIdentifier: name, Value: floatV(1)})
	}
	h.register("s", "y", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil) // revision 21
	m := h.openMux()
	xs := m.create(1, &pb.WatchVariablesRequest{SessionId: "s", Pattern: "x*"}, 0)
	ys := m.create(2, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"y"}}, 0)
	xs.created()
	ys.created()
	// One atomic set of 20 changes the x watch wants: more than its buffer
	// of 8 at once, however fast the stream is read.
	if _, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: updates}); err != nil {
		t.Fatal(err)
	}
	h.set("s", "y", floatV(1))
	e := xs.ended()
	wantEnded(t, e, codes.ResourceExhausted, ReasonSlowConsumer)
	if e.GetMetadata()["resume_revision"] == "" {
		t.Fatalf("ended %v names no resume_revision", e)
	}
	if e.GetMetadata()["resume_revision"] != "21" {
		t.Fatalf("ended %v: want resume_revision 21", e)
	}
	wantUpdate(t, ys.nextUpdate(), "value_change", "y", 23)
}

// TestMuxShutdown: Shutdown ends every watch with SHUTTING_DOWN and its
// resume revision, then the stream with UNAVAILABLE.
func TestMuxShutdown(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	m := h.openMux()
	w := m.create(1, &pb.WatchVariablesRequest{SessionId: "s"}, 0)
	w.created()
	h.set("s", "x", floatV(1))
	wantUpdate(t, w.nextUpdate(), "value_change", "x", 2)
	h.srv.Shutdown()
	e := w.ended()
	wantEnded(t, e, codes.Unavailable, ReasonShuttingDown)
	if e.GetMetadata()["resume_revision"] != "2" {
		t.Fatalf("ended %v: want resume_revision 2", e)
	}
	<-m.done
	if status.Code(m.err) != codes.Unavailable {
		t.Fatalf("stream ended with %v, want UNAVAILABLE", m.err)
	}
}
