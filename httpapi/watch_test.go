package httpapi

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

func floatV(f float64) *pb.Value { return &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: f}} }

// session creates session id with float variables names (value 0) over
// gRPC and returns its incarnation.
func (h *harness) session(id string, names ...string) string {
	h.t.Helper()
	resp, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: id})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, n := range names {
		if _, err := h.client.RegisterVariable(h.ctx(), &pb.RegisterVariableRequest{SessionId: id, Name: n,
			Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: floatV(0)}); err != nil {
			h.t.Fatal(err)
		}
	}
	return resp.GetSession().GetIncarnation()
}

// set writes a float over gRPC and returns the revision.
func (h *harness) set(session, name string, v float64) int64 {
	h.t.Helper()
	resp, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: session, VariableIdentifier: name, Value: floatV(v)})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.GetRevision()
}

// updates are the (name, float value) of an update or snapshot event.
func updates(t testing.TB, ev sseEvent) (rev int64, vals map[string]float64) {
	t.Helper()
	m := ev.json(t)
	vals = map[string]float64{}
	for _, u := range m["updates"].([]any) {
		v := u.(map[string]any)["variable"].(map[string]any)
		f, _ := v["value"].(map[string]any)["float_value"].(float64)
		vals[v["name"].(string)] = f
	}
	return int64(m["revision"].(float64)), vals
}

// TestWatchSnapshotThenChanges: a watch with initial values answers
// created, one snapshot event with every variable, then one update event
// per revision, each with its id.
func TestWatchSnapshotThenChanges(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	inc := h.session("s", "a", "b")
	h.set("s", "a", 1)
	w := openSSE(t, nil, h.watchURL(qSession, "s", qInitial, "true"), "", "")
	if ct := w.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	created := w.expect("created").json(t)
	if created["incarnation"] != inc || created["snapshot_revision"].(float64) != 3 {
		t.Fatalf("created %v", created)
	}
	snap := w.expect("snapshot")
	rev, vals := updates(t, snap)
	if rev != 3 || len(vals) != 2 || vals["a"] != 1 || snap.id != EventID(inc, 3) {
		t.Fatalf("snapshot %v %v %s", rev, vals, snap.id)
	}
	// An atomic write of two variables is one event.
	resp, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
		{VariableIdentifier: "a", Value: floatV(2)}, {VariableIdentifier: "b", Value: floatV(3)}}})
	if err != nil {
		t.Fatal(err)
	}
	up := w.expect("update")
	rev, vals = updates(t, up)
	if rev != resp.GetRevision() || vals["a"] != 2 || vals["b"] != 3 || up.id != EventID(inc, rev) {
		t.Fatalf("update %d %v %s", rev, vals, up.id)
	}
	// The session closing ends the watch with an OK end event.
	if _, err := h.client.CleanupSession(h.ctx(), &pb.CleanupSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	w.expect("update") // session_closed
	end := w.expect("end").json(t)
	if c, _ := end["code"].(float64); c != 0 {
		t.Fatalf("end %v", end)
	}
	if _, ok := w.next(); ok {
		t.Fatal("events after end")
	}
}

// TestWatchHeartbeatAndResume: a watch without initial values starts
// with a heartbeat at the snapshot; heartbeats follow at the interval; and
// a reconnect with Last-Event-ID replays exactly the changes after it.
func TestWatchHeartbeatAndResume(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	inc := h.session("s", "a")
	w := openSSE(t, nil, h.watchURL(qSession, "s", qHeartbeat, "50ms"), "", "")
	w.expect("created")
	hb := w.expect("heartbeat")
	if hb.id != EventID(inc, 1) {
		t.Fatalf("first heartbeat id %s", hb.id)
	}
	if hb2 := w.expect("heartbeat"); hb2.id != hb.id {
		t.Fatalf("later heartbeat %s", hb2.id)
	}
	w.close()
	r3 := h.set("s", "a", 3)
	r4 := h.set("s", "a", 4)
	w = openSSE(t, nil, h.watchURL(qSession, "s", qInitial, "true"), "", hb.id)
	w.expect("created")
	for _, want := range []struct {
		rev int64
		v   float64
	}{{r3, 3}, {r4, 4}} {
		rev, vals := updates(t, w.nextUpdate())
		if rev != want.rev || vals["a"] != want.v {
			t.Fatalf("replayed %d %v, want %v", rev, vals, want)
		}
	}
	// last_event_id in the query works as the header does.
	w.close()
	w = openSSE(t, nil, h.watchURL(qSession, "s", qLastEventID, EventID(inc, r3)), "", "")
	w.expect("created")
	if rev, _ := updates(t, w.nextUpdate()); rev != r4 {
		t.Fatalf("replayed %d, want %d", rev, r4)
	}
}

// TestWatchIncarnationChanged: a resume naming another incarnation of the
// session (the session was deleted and created again) ends at once with an
// end event saying SESSION_INCARNATION_CHANGED, and no data of the new
// incarnation.
func TestWatchIncarnationChanged(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	old := h.session("s", "a")
	h.set("s", "a", 1)
	if _, err := h.client.CleanupSession(h.ctx(), &pb.CleanupSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	if inc := h.session("s", "a"); inc == old {
		t.Fatal("same incarnation")
	}
	h.set("s", "a", 2)
	w := openSSE(t, nil, h.watchURL(qSession, "s"), "", EventID(old, 1))
	end := w.expect("end").json(t)
	if codes.Code(end["code"].(float64)) != codes.FailedPrecondition || reason(end) != grpcapi.ReasonIncarnationChanged {
		t.Fatalf("end %v", end)
	}
	if _, ok := w.next(); ok {
		t.Fatal("events after end")
	}
}

// TestWatchErrorsAreEvents: after the token check, a watch's refusal is an
// end event (an EventSource cannot read a failed response's body); a bad
// token or an unparsable query is an HTTP error.
func TestWatchErrorsAreEvents(t *testing.T) {
	h := newHarness(t, harnessOptions{tokens: testTokens})
	h.token = acmeToken
	h.session("acme-s", "a")
	cases := []struct {
		name, url, token string
		code             codes.Code
	}{
		{"unknown session", h.watchURL(qSession, "nope"), acmeToken, codes.NotFound},
		{"another tenant's session", h.watchURL(qSession, "acme-s"), betaToken, codes.PermissionDenied},
		{"no session", h.watchURL(), acmeToken, codes.InvalidArgument},
		{"exclusive fields", h.watchURL(qSession, "acme-s", qStart, "1", qInitial, "true"), acmeToken, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := openSSE(t, nil, tc.url, tc.token, "")
			if w.resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", w.resp.StatusCode)
			}
			end := w.expect("end").json(t)
			if codes.Code(end["code"].(float64)) != tc.code {
				t.Fatalf("end %v, want %v", end, tc.code)
			}
		})
	}
	for _, tc := range []struct {
		name, url, token string
		want             int
	}{
		{"no token", h.watchURL(qSession, "acme-s"), "", http.StatusUnauthorized},
		{"bad boolean", h.watchURL(qSession, "acme-s", qInitial, "maybe"), acmeToken, http.StatusBadRequest},
		{"bad duration", h.watchURL(qSession, "acme-s", qHeartbeat, "soon"), acmeToken, http.StatusBadRequest},
		{"bad Last-Event-ID", h.watchURL(qSession, "acme-s", qLastEventID, "7"), acmeToken, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := openSSE(t, nil, tc.url, tc.token, "")
			if w.resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", w.resp.StatusCode, tc.want)
			}
		})
	}
}

// TestWatchSlowConsumer: a client that stops reading is cut off once the
// subscription's buffer fills: the stream ends with SLOW_CONSUMER naming
// the revision of its last event, and a resume from that event's id gets
// every later change.
func TestWatchSlowConsumer(t *testing.T) {
	h := newHarness(t, harnessOptions{engine: engine.Config{SubscriptionBuffer: 4}})
	client := smallBuffers(t, h, Config{API: h.api})
	h.session("s", "a")
	w := openSSE(t, client, h.watchURL(qSession, "s"), "", "")
	w.expect("created")
	w.expect("heartbeat")
	// Big values fill the socket buffers fast.
	big := strings.Repeat("x", 2000)
	if _, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "a", Value: floatV(0),
		Metadata: map[string]string{"pad": big}}); err != nil {
		t.Fatal(err)
	}
	// The pump blocks writing to the full connection while the buffer
	// fills behind it; writes far past what the socket buffers hold make
	// the cut-off certain. It surfaces once the client reads again.
	var last int64
	for range 200 {
		resp, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "a",
			Value: floatV(float64(last + 1)), Metadata: map[string]string{"pad": big}})
		if err != nil {
			t.Fatal(err)
		}
		last = resp.GetRevision()
	}
	var got int64
	for {
		ev := w.mustNext()
		if ev.name == "end" {
			st := ev.json(t)
			if codes.Code(st["code"].(float64)) != codes.ResourceExhausted || reason(st) != grpcapi.ReasonSlowConsumer {
				t.Fatalf("end %v", st)
			}
			resume, _ := strconv.ParseInt(errorInfoMeta(st)["resume_revision"].(string), 10, 64)
			if resume != revisionOf(t, w.lastID) {
				t.Fatalf("resume_revision %d, last id %s", resume, w.lastID)
			}
			break
		}
		if ev.name == "update" {
			rev, _ := updates(t, ev)
			if rev != got+1 && got != 0 {
				t.Fatalf("revision %d after %d", rev, got)
			}
			got = rev
		}
	}
	w2 := openSSE(t, client, h.watchURL(qSession, "s"), "", w.lastID)
	w2.expect("created")
	for got < last {
		ev := w2.mustNext()
		if ev.name != "update" {
			continue
		}
		rev, _ := updates(t, ev)
		if rev != revisionOf(t, w.lastID)+1 && got != 0 && rev != got+1 {
			t.Fatalf("resumed at %d after %d", rev, got)
		}
		got = rev
	}
}

// TestWatchPostBody: POST /v1/watch takes the request as a JSON
// WatchVariablesRequest, fields the query has no parameter for included.
func TestWatchPostBody(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.session("s", "a", "b")
	h.set("s", "b", 5)
	req, err := http.NewRequest(http.MethodPost, h.url+"/v1/watch",
		strings.NewReader(`{"session_id":"s","variable_identifiers":["b"],"include_initial_values":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	w := &sseStream{t: t, resp: resp, r: bufio.NewReader(resp.Body), cancel: func() {}}
	t.Cleanup(w.close)
	w.expect("created")
	if _, vals := updates(t, w.expect("snapshot")); len(vals) != 1 || vals["b"] != 5 {
		t.Fatalf("snapshot %v", vals)
	}
}

// TestWatchWriteTimeout: a client that stops reading but keeps its
// connection open does not hold its watch: once a write blocks for the
// write timeout the stream ends and its subscription is released.
func TestWatchWriteTimeout(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	client := smallBuffers(t, h, Config{API: h.api, WriteTimeout: 100 * time.Millisecond})
	h.session("s", "a")
	w := openSSE(t, client, h.watchURL(qSession, "s"), "", "")
	w.expect("created")
	big := strings.Repeat("x", 2000)
	for range 100 { // far more than the sockets hold; the subscription's buffer is the default, large
		if _, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "a",
			Value: floatV(1), Metadata: map[string]string{"pad": big}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the blocked watch to end", func() bool { return h.api.ActiveStreams() == 0 })
	if n := h.api.Stats().StreamEnds[grpcapi.EndSlowConsumer]; n != 0 {
		t.Fatalf("%d slow-consumer ends: the write timeout should have ended it", n)
	}
}
