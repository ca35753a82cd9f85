package grpcapi

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// wantUpdate fails unless u has the type, variable name and revision given
// (name "" for updates about no variable).
func wantUpdate(t *testing.T, u *pb.VariableUpdate, typ, name string, rev int64) {
	t.Helper()
	if u.GetUpdateType() != typ || u.GetVariable().GetName() != name || u.GetRevision() != rev {
		t.Fatalf("update %v, want %s of %q at revision %d", u, typ, name, rev)
	}
	if u.GetTimestamp() == nil {
		t.Fatalf("update %v has no timestamp", u)
	}
	if name != "" && u.GetVariableId() != u.GetVariable().GetId() {
		t.Fatalf("update %v: variable_id does not match the variable", u)
	}
}

func TestWatchInitialValuesThenChanges(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "a", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), nil)
	b := h.register("s", "b", pb.VariableType_VARIABLE_TYPE_STRING, strV("x"), nil)
	h.register("s", "c", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)

	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"a", b.GetId()}, IncludeInitialValues: true})
	u := w.next()
	wantUpdate(t, u, "initial_value", "a", 3)
	if u.GetVariable().GetValue().GetFloatValue() != 1 {
		t.Fatalf("initial value %v", u)
	}
	wantUpdate(t, w.next(), "initial_value", "b", 3)
	wantUpdate(t, w.next(), "initial_values_complete", "", 3)

	h.set("s", "c", floatV(5)) // not watched
	h.set("s", "a", floatV(2))
	u = w.next()
	wantUpdate(t, u, "value_change", "a", 5)
	if u.GetOldValue().GetFloatValue() != 1 || u.GetVariable().GetValue().GetFloatValue() != 2 ||
		u.GetUpdateSource() != "test" || u.GetVariable().GetVersion() != 2 {
		t.Fatalf("value change %v", u)
	}
	if _, err := h.client.DeleteVariable(h.ctx(), &pb.DeleteVariableRequest{SessionId: "s", VariableIdentifier: "b"}); err != nil {
		t.Fatal(err)
	}
	wantUpdate(t, w.next(), "variable_deleted", "b", 6)
}

// TestWatchSnapshotHeader checks that the headers carry the snapshot
// revision, that a watch without initial values starts with a heartbeat at
// it, and that a change made right after the headers arrive is delivered.
func TestWatchSnapshotHeader(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(1), nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	stream, err := h.client.WatchVariables(ctx, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	md, err := stream.Header()
	if err != nil {
		t.Fatal(err)
	}
	if got := md.Get(SnapshotRevisionHeader); len(got) != 1 || got[0] != "1" {
		t.Fatalf("header %s = %v, want [1]", SnapshotRevisionHeader, got)
	}
	u, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	wantUpdate(t, u, "heartbeat", "", 1) // at once, at the snapshot revision
	h.set("s", "a", intV(2))
	if u, err = stream.Recv(); err != nil {
		t.Fatal(err)
	}
	wantUpdate(t, u, "value_change", "a", 2)
}

// TestWatchPatternSeesRegistrations checks variable_registered for names
// matching a pattern watch, registered after it began.
func TestWatchPatternSeesRegistrations(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "cpu.load", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0.5), nil)
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", Pattern: "cpu.*", IncludeInitialValues: true})
	wantUpdate(t, w.next(), "initial_value", "cpu.load", 1)
	wantUpdate(t, w.next(), "initial_values_complete", "", 1)
	h.register("s", "mem.free", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(1), nil)
	h.register("s", "cpu.temp", pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(40), nil)
	wantUpdate(t, w.next(), "variable_registered", "cpu.temp", 3)
	h.set("s", "cpu.temp", floatV(41))
	wantUpdate(t, w.next(), "value_change", "cpu.temp", 4)
}

// TestWatchDuringWrites starts watchers while a writer counts a variable
// up, and checks each stream against the writes: the initial value is the
// value at the snapshot revision, then every later write exactly once, in
// order (the stale-read problem of the seed, over the wire).
func TestWatchDuringWrites(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "n", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
	const writes = 300
	// Revision r holds n = r-1: registration is revision 1 with n = 0.
	writer := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		for i := int64(1); i <= writes; i++ {
			if i == writes/3 {
				close(started)
			}
			if _, err := h.client.SetVariable(context.Background(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "n", Value: intV(i)}); err != nil {
				writer <- err
				return
			}
		}
		writer <- nil
	}()
	<-started
	var watchers []*watcher
	for range 4 {
		watchers = append(watchers, h.watch(&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"n"}, IncludeInitialValues: true}))
	}
	if err := <-writer; err != nil {
		t.Fatal(err)
	}
	for i, w := range watchers {
		init := w.nextData()
		complete := w.nextData()
		if init.GetUpdateType() != "initial_value" || complete.GetUpdateType() != "initial_values_complete" ||
			init.GetVariable().GetValue().GetIntegerValue() != init.GetRevision()-1 || complete.GetRevision() != init.GetRevision() {
			t.Fatalf("watcher %d: initial %v then %v", i, init, complete)
		}
		for want := init.GetVariable().GetValue().GetIntegerValue() + 1; want <= writes; want++ {
			u := w.nextData()
			if u.GetUpdateType() != "value_change" || u.GetVariable().GetValue().GetIntegerValue() != want ||
				u.GetOldValue().GetIntegerValue() != want-1 || u.GetRevision() != want+1 {
				t.Fatalf("watcher %d: got %v, want the change to %d at revision %d", i, u, want, want+1)
			}
		}
	}
}

// TestWatchAtomicSet checks that an atomic SetVariables reaches a watcher
// as consecutive updates with one revision.
func TestWatchAtomicSet(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run("batched="+strconv.FormatBool(batched), func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			h.createSession("s")
			for _, name := range []string{"x", "y", "z"} {
				h.register("s", name, pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
			}
			var next func() *pb.VariableUpdate
			if batched {
				next = h.watchBatched(&pb.WatchVariablesRequest{SessionId: "s"}).next
			} else {
				next = h.watch(&pb.WatchVariablesRequest{SessionId: "s"}).nextData
			}
			h.set("s", "x", intV(1))
			resp, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
				{VariableIdentifier: "z", Value: intV(3)},
				{VariableIdentifier: "x", Value: intV(2)},
				{VariableIdentifier: "y", Value: intV(2)},
			}})
			if err != nil {
				t.Fatal(err)
			}
			h.set("s", "y", intV(4))
			wantUpdate(t, next(), "value_change", "x", 4)
			for _, name := range []string{"z", "x", "y"} {
				wantUpdate(t, next(), "value_change", name, resp.GetRevision())
			}
			wantUpdate(t, next(), "value_change", "y", 6)
		})
	}
}

func TestWatchHeartbeats(t *testing.T) {
	tests := []struct {
		name      string
		server    time.Duration // server default
		requested time.Duration // in the request; 0: unset
	}{
		{"requested 50ms", time.Hour, 50 * time.Millisecond},
		{"below the floor is raised to it", time.Hour, time.Millisecond},
		{"server default", 50 * time.Millisecond, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{heartbeat: tc.server})
			h.createSession("s")
			h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
			req := &pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: true}
			if tc.requested != 0 {
				req.HeartbeatInterval = durationpb.New(tc.requested)
			}
			w := h.watch(req)

			// While data flows, heartbeats may be skipped (the client knows
			// the stream is alive), but any that comes must cover every
			// revision seen before it.
			var seen int64
			for i := int64(1); i <= 20; i++ {
				h.set("s", "a", intV(i))
				for {
					u := w.next()
					if u.GetUpdateType() == "heartbeat" {
						if u.GetRevision() < seen {
							t.Fatalf("heartbeat at revision %d after revision %d was delivered", u.GetRevision(), seen)
						}
						if u.GetVariable() != nil || u.GetVariableId() != "" || u.GetTimestamp() == nil {
							t.Fatalf("heartbeat %v", u)
						}
						seen = u.GetRevision()
						continue
					}
					if u.GetRevision() < seen {
						t.Fatalf("update at revision %d after revision %d", u.GetRevision(), seen)
					}
					seen = u.GetRevision()
					if u.GetUpdateType() == "value_change" && u.GetVariable().GetValue().GetIntegerValue() == i {
						break
					}
				}
			}
			// An idle stream gets heartbeats at the interval, at the latest
			// revision.
			for heartbeats := 0; heartbeats < 2; {
				u := w.next()
				if u.GetUpdateType() != "heartbeat" {
					t.Fatalf("idle stream got %v", u)
				}
				if u.GetRevision() != seen {
					t.Fatalf("idle heartbeat at revision %d, want %d", u.GetRevision(), seen)
				}
				heartbeats++
			}
		})
	}
}

// TestWatchDisconnectCleanup cancels watching clients and checks that the
// server ends their subscriptions and handler goroutines.
func TestWatchDisconnectCleanup(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
	if _, err := h.client.Ping(h.ctx(), &pb.PingRequest{}); err != nil { // connect first
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()

	var watchers []*watcher
	for i := range 5 {
		req := &pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: i%2 == 0}
		watchers = append(watchers, h.watch(req))
	}
	if n := h.srv.ActiveStreams(); n != 5 {
		t.Fatalf("ActiveStreams = %d, want 5", n)
	}
	h.set("s", "a", intV(1))
	for _, w := range watchers {
		w.cancel()
		<-w.done
	}
	waitFor(t, "watch handlers to return", func() bool { return h.srv.ActiveStreams() == 0 })
	for i, sub := range h.backend.subscriptions() {
		select {
		case <-sub.Done():
		default:
			t.Fatalf("subscription %d still running", i)
		}
		if !errors.Is(sub.Err(), engine.ErrUnsubscribed) {
			t.Fatalf("subscription %d ended with %v, want ErrUnsubscribed", i, sub.Err())
		}
	}
	waitFor(t, "goroutines to return to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
	// The engine goes on serving writes and new watches.
	h.set("s", "a", intV(2))
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
	h.set("s", "a", intV(3))
	wantUpdate(t, w.nextData(), "value_change", "a", 4)
}

func TestWatchSessionClosed(t *testing.T) {
	t.Run("cleanup", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		h.createSession("s")
		h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
		w := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
		h.set("s", "a", intV(1))
		if _, err := h.client.CleanupSession(h.ctx(), &pb.CleanupSessionRequest{SessionId: "s"}); err != nil {
			t.Fatal(err)
		}
		wantUpdate(t, w.nextData(), "value_change", "a", 2)
		wantUpdate(t, w.nextData(), "session_closed", "", 2)
		if err := w.end(); err != nil {
			t.Fatalf("stream ended with %v, want OK", err)
		}
	})

	// The watch that sees the session expire would keep it alive by
	// default (TestWatchKeepsSessionAliveOverGRPC).
	t.Run("expired, fake clock", func(t *testing.T) {
		clock := newFakeClock()
		h := newHarness(t, harnessOptions{engine: engine.Config{Now: clock.Now, ExpireWatchedSessions: true}})
		if _, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: "s", Ttl: durationpb.New(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
		w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: true})
		wantUpdate(t, w.nextData(), "initial_value", "a", 1)
		wantUpdate(t, w.nextData(), "initial_values_complete", "", 1)

		clock.Advance(time.Minute)
		// Gone at once: the very next call sees no session.
		_, err := h.client.GetSession(h.ctx(), &pb.GetSessionRequest{SessionId: "s"})
		wantCode(t, err, codes.NotFound)
		_, err = h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "a", Value: intV(1)})
		wantCode(t, err, codes.NotFound)
		hb, err := h.client.Heartbeat(h.ctx(), &pb.HeartbeatRequest{SessionId: "s"})
		if err != nil || hb.GetSessionValid() {
			t.Fatalf("Heartbeat = %v, %v; want session_valid=false", hb, err)
		}
		wantUpdate(t, w.nextData(), "session_closed", "", 1)
		if err := w.end(); err != nil {
			t.Fatalf("stream ended with %v, want OK", err)
		}
	})

	t.Run("expired, real clock", func(t *testing.T) {
		h := newHarness(t, harnessOptions{engine: engine.Config{ExpireWatchedSessions: true}})
		if _, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: "s", Ttl: durationpb.New(100 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		w := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
		// Nobody uses the session: the engine's own timer expires it.
		wantUpdate(t, w.nextData(), "session_closed", "", 0)
		if err := w.end(); err != nil {
			t.Fatalf("stream ended with %v, want OK", err)
		}
		list, err := h.client.ListSessions(h.ctx(), &pb.ListSessionsRequest{})
		if err != nil || len(list.GetSessions()) != 0 {
			t.Fatalf("ListSessions = %v, %v; want none", list, err)
		}
	})
}

// TestWatchSlowConsumer overflows a subscription's buffer in one step and
// checks the stream ends RESOURCE_EXHAUSTED naming where to resume.
func TestWatchSlowConsumer(t *testing.T) {
	h := newHarness(t, harnessOptions{engine: engine.Config{SubscriptionBuffer: 2}})
	h.createSession("s")
	for _, name := range []string{"x", "y", "z"} {
		h.register("s", name, pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
	}
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
	h.set("s", "x", intV(1))
	wantUpdate(t, w.nextData(), "value_change", "x", 4)
	_, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
		{VariableIdentifier: "x", Value: intV(2)}, {VariableIdentifier: "y", Value: intV(2)}, {VariableIdentifier: "z", Value: intV(2)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = w.end()
	wantCode(t, err, codes.ResourceExhausted)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "resume with start_revision=4") {
		t.Fatalf("message %q does not name the resume revision 4", msg)
	}
}

func TestWatchServerShutdown(t *testing.T) {
	for _, how := range []string{"Server.Shutdown", "engine.Close"} {
		t.Run(how, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			h.createSession("s")
			h.register("s", "a", pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
			w := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
			h.set("s", "a", intV(1))
			wantUpdate(t, w.nextData(), "value_change", "a", 2)
			if how == "Server.Shutdown" {
				h.srv.Shutdown()
			} else {
				_ = h.eng.Close()
			}
			err := w.end()
			wantCode(t, err, codes.Unavailable)
			if msg := status.Convert(err).Message(); !strings.Contains(msg, "resume with start_revision=2") {
				t.Fatalf("message %q does not name the resume revision 2", msg)
			}
			waitFor(t, "watch handlers to return", func() bool { return h.srv.ActiveStreams() == 0 })
		})
	}
}

// batchWatcher reads a WatchVariablesBatched stream, keeping the batches.
type batchWatcher struct {
	t       *testing.T
	mu      sync.Mutex
	batches []*pb.VariableUpdateBatch
	flat    chan *pb.VariableUpdate
}

func (h *harness) watchBatched(req *pb.WatchVariablesRequest) *batchWatcher {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := h.client.WatchVariablesBatched(ctx, req)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		cancel()
		h.t.Fatal(err)
	}
	w := &batchWatcher{t: h.t, flat: make(chan *pb.VariableUpdate, 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b, err := stream.Recv()
			if err != nil {
				return
			}
			w.mu.Lock()
			w.batches = append(w.batches, b)
			w.mu.Unlock()
			for _, u := range b.GetUpdates() {
				if u.GetUpdateType() != "heartbeat" {
					w.flat <- u
				}
			}
		}
	}()
	h.t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

// next returns the next update other than a heartbeat, across batches.
func (w *batchWatcher) next() *pb.VariableUpdate {
	w.t.Helper()
	select {
	case u := <-w.flat:
		return u
	case <-time.After(waitTimeout):
		w.t.Fatal("timed out waiting for an update")
	}
	return nil
}

func (w *batchWatcher) received() []*pb.VariableUpdateBatch {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*pb.VariableUpdateBatch(nil), w.batches...)
}

func TestWatchBatched(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.createSession("s")
	for _, name := range []string{"a", "b", "c"} {
		h.register("s", name, pb.VariableType_VARIABLE_TYPE_INTEGER, intV(0), nil)
	}
	w := h.watchBatched(&pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: true, MaxBatchSize: 2})
	for _, name := range []string{"a", "b", "c"} {
		wantUpdate(t, w.next(), "initial_value", name, 3)
	}
	wantUpdate(t, w.next(), "initial_values_complete", "", 3)

	var pairs []int64 // revisions of atomic pairs
	for i := int64(1); i <= 20; i++ {
		h.set("s", "a", intV(i))
		resp, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
			{VariableIdentifier: "b", Value: intV(i)}, {VariableIdentifier: "c", Value: intV(i)},
		}})
		if err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, resp.GetRevision())
	}
	for _, rev := range pairs {
		wantUpdate(t, w.next(), "value_change", "a", rev-1)
		wantUpdate(t, w.next(), "value_change", "b", rev)
		wantUpdate(t, w.next(), "value_change", "c", rev)
	}
	paired := map[int64]bool{}
	for _, rev := range pairs {
		paired[rev] = true
	}
	for _, b := range w.received() {
		if n := len(b.GetUpdates()); n == 0 || n > 2 {
			t.Fatalf("batch of %d updates, want 1..2", n)
		}
		// The initial snapshot (4 updates at revision 3) cannot fit in one
		// message; every atomic pair must.
		for _, u := range b.GetUpdates() {
			if paired[u.GetRevision()] && len(b.GetUpdates()) != 2 {
				t.Fatalf("atomic set at revision %d split across messages: %v", u.GetRevision(), b)
			}
		}
	}
}
