package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// The watch over HTTP: Server-Sent Events (text/event-stream), so that a
// browser's EventSource, a fetch() reader or curl -N can follow a session.
//
// It is a WatchVariablesBatched stream of grpcapi.Server served in-process
// (watchStream is its grpc.ServerStream), so it has every guarantee of the
// gRPC watches by construction: the snapshot is atomic, every change comes
// exactly once and in revision order after it, heartbeats tell the
// position, a client that reads too slowly is cut off with SLOW_CONSUMER
// naming the revision to resume from, the stream limits apply, and a
// resume naming another incarnation of the session is refused with
// SESSION_INCARNATION_CHANGED rather than served the other history.
//
// Events, each a JSON object in one data line:
//
//	event: created    {"snapshot_revision":N,"incarnation":"..."}  the watch is registered
//	event: snapshot   {"revision":N,"updates":[VariableUpdate...]} the initial values, all of them
//	event: update     {"revision":N,"updates":[VariableUpdate...]} the changes of one revision
//	event: heartbeat  VariableUpdate (update_type "heartbeat")     everything up to its revision was sent
//	event: end        google.rpc.Status                            the last event; code 0 when the session closed
//
// snapshot, update and heartbeat carry "id: INCARNATION:REVISION". A
// browser's EventSource sends the last one back as Last-Event-ID when it
// reconnects, and the watch resumes after it (start_revision and
// incarnation), so one revision's changes are never split by a resume:
// they travel in one event. A client that cannot set that header may pass
// the same value as the last_event_id query parameter; the header wins.
//
// Every outcome after the token check is an event, errors too (an unknown
// session, an incarnation change, a bad field): an EventSource cannot read
// the body of a failed response, and it must learn why it should stop
// reconnecting. A missing or bad token, or a query that does not parse,
// answers with an HTTP error and the status JSON instead.

// Query parameters of GET /v1/watch, the fields of WatchVariablesRequest.
const (
	qSession     = "session_id"
	qVariable    = "variable" // repeatable: variable_identifiers
	qPattern     = "pattern"
	qInitial     = "include_initial_values"
	qStart       = "start_revision"
	qIncarnation = "incarnation"
	qHeartbeat   = "heartbeat_interval" // a Go duration: 5s, 500ms
	qCoalesce    = "coalesce"
	qLastEventID = "last_event_id"
)

// serveWatch serves GET and POST /v1/watch.
func (h *Handler) serveWatch(w http.ResponseWriter, r *http.Request) {
	ctx, err := h.callContext(r, "WatchVariablesBatched")
	if err != nil {
		writeStatus(w, err)
		return
	}
	req, err := h.watchRequest(w, r)
	if err != nil {
		writeStatus(w, err)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not hold events back
	w.WriteHeader(http.StatusOK)
	out := newEventWriter(w, h.cfg.WriteTimeout)
	out.retry(2 * time.Second)
	if out.flush() != nil {
		return
	}
	ws := &watchStream{ctx: ctx, out: out}
	end := h.cfg.API.WatchVariablesBatched(req, ws)
	h.cfg.Logger.Debug("http watch ended", "session", req.GetSessionId(), "peer", r.RemoteAddr, "code", status.Code(end).String())
	if ws.failed {
		return // the connection is gone: nothing more can reach the client
	}
	out.event("end", "", statusJSON(end))
	_ = out.flush()
}

// watchRequest is the request's WatchVariablesRequest: the JSON body of a
// POST, the query parameters of a GET, and then Last-Event-ID on top.
func (h *Handler) watchRequest(w http.ResponseWriter, r *http.Request) (*pb.WatchVariablesRequest, error) {
	req := &pb.WatchVariablesRequest{}
	if r.Method == http.MethodPost {
		if !wantsJSON(r) {
			return nil, invalidf("Content-Type %q: the body must be application/json", clip(r.Header.Get("Content-Type")))
		}
		if err := h.readJSON(w, r, req); err != nil {
			return nil, err
		}
	} else if err := watchFromQuery(r, req); err != nil {
		return nil, err
	}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get(qLastEventID)
	}
	if last != "" {
		inc, rev, err := parseEventID(last)
		if err != nil {
			return nil, err
		}
		// A resume replays what was missed instead of a snapshot: the
		// reconnect of an EventSource repeats the URL it was opened with,
		// include_initial_values=true and all.
		req.IncludeInitialValues = false
		req.StartRevision, req.Incarnation = &rev, inc
	}
	return req, nil
}

// watchFromQuery fills req from GET /v1/watch's query parameters. It only
// parses: what the values mean is checked by grpcapi, as for gRPC.
func watchFromQuery(r *http.Request, req *pb.WatchVariablesRequest) error {
	q := r.URL.Query()
	req.SessionId = q.Get(qSession)
	req.VariableIdentifiers = q[qVariable]
	req.Pattern = q.Get(qPattern)
	req.Incarnation = q.Get(qIncarnation)
	for _, b := range []struct {
		key string
		dst *bool
	}{{qInitial, &req.IncludeInitialValues}, {qCoalesce, &req.Coalesce}} {
		if v := q.Get(b.key); v != "" {
			x, err := strconv.ParseBool(v)
			if err != nil {
				return invalidf("%s=%q is not a boolean", b.key, clip(v))
			}
			*b.dst = x
		}
	}
	if v := q.Get(qStart); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return invalidf("%s=%q is not an integer", qStart, clip(v))
		}
		req.StartRevision = &n
	}
	if v := q.Get(qHeartbeat); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return invalidf("%s=%q is not a duration (5s, 500ms)", qHeartbeat, clip(v))
		}
		req.HeartbeatInterval = durationpb.New(d)
	}
	return nil
}

// EventID is the SSE id of a position in a session's history.
func EventID(incarnation string, revision int64) string {
	return incarnation + ":" + strconv.FormatInt(revision, 10)
}

// parseEventID parses an EventID.
func parseEventID(id string) (incarnation string, revision int64, err error) {
	i := strings.LastIndexByte(id, ':')
	if i >= 0 {
		incarnation = id[:i]
		revision, err = strconv.ParseInt(id[i+1:], 10, 64)
	}
	if i <= 0 || err != nil || revision < 0 {
		return "", 0, status.Errorf(codes.InvalidArgument, "Last-Event-ID %q is not INCARNATION:REVISION", clip(id))
	}
	return incarnation, revision, nil
}
