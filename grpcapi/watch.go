package grpcapi

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/plugins"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// SnapshotRevisionHeader is the response header every watch stream sends
// as soon as its subscription is registered, carrying the snapshot
// revision. A client that waits for the headers (grpc.ClientStream.Header)
// knows that every change made after that point reaches the stream, even
// when it asked for no initial values and no update has arrived yet.
const SnapshotRevisionHeader = "varwatch-snapshot-revision"

// IncarnationHeader is the response header, sent with
// SnapshotRevisionHeader, carrying the watched session's incarnation: the
// history the stream's revisions belong to. A client resumes with it in
// WatchVariablesRequest.incarnation.
const IncarnationHeader = "varwatch-session-incarnation"

// watchHeader is the header a watch stream sends once registered.
func watchHeader(snapshot int64, incarnation string) metadata.MD {
	return metadata.Pairs(SnapshotRevisionHeader, strconv.FormatInt(snapshot, 10), IncarnationHeader, incarnation)
}

// errShutdown ends a pump when Server.Shutdown is called.
var errShutdown = errors.New("server is shutting down")

// WatchVariables streams one VariableUpdate per message: the initial values
// and initial_values_complete if asked (else a heartbeat at the snapshot
// revision), then every change, with heartbeats at the interval. See pump
// for the guarantees and endStatus for how a stream ends.
func (s *Server) WatchVariables(req *pb.WatchVariablesRequest, stream grpc.ServerStreamingServer[pb.VariableUpdate]) error {
	return s.serveWatch(req, stream, false, func(evs []engine.Event) error {
		for i := range evs {
			if err := stream.SendMsg(&encodedMessage{unframe(framed(&evs[i], viewFull))}); err != nil {
				return err
			}
		}
		return nil
	})
}

// WatchVariablesBatched streams the same updates as WatchVariables, but
// each message carries everything that was waiting when the sender woke
// (after lingering up to max_batch_delay to fill it), cut into messages of
// at most max_batch_size updates and MaxBatchBytes encoded bytes at
// revision boundaries, so an atomic set is never split (see sendBatches).
func (s *Server) WatchVariablesBatched(req *pb.WatchVariablesRequest, stream grpc.ServerStreamingServer[pb.VariableUpdateBatch]) error {
	size := int(req.GetMaxBatchSize())
	if size == 0 {
		size = DefaultMaxBatchSize
	}
	return s.serveWatch(req, stream, true, func(evs []engine.Event) error {
		return sendBatches(evs, size, func(msg []byte, n int) error {
			s.hist.batchBatched.Observe(float64(n))
			return stream.SendMsg(&encodedMessage{msg})
		})
	})
}

// pacing is how a stream's sender paces itself: heartbeat interval, and for
// batched streams how long to linger for a fuller batch and how full.
type pacing struct {
	heartbeat time.Duration
	linger    time.Duration
	fill      int
}

// watchRequestFromProto validates a watch request and maps it to the
// engine. Fields in the wire contract that are not served yet answer
// UNIMPLEMENTED naming the field, rather than being silently ignored.
// options is accepted and ignored (the seed's "future extensions" map).
func (s *Server) watchRequestFromProto(req *pb.WatchVariablesRequest, batched bool) (engine.WatchRequest, pacing, error) {
	var none engine.WatchRequest
	var nopace pacing
	if req.GetSessionId() == "" {
		return none, nopace, invalidf("session_id is empty")
	}
	if err := s.checkIdentifiers(len(req.GetVariableIdentifiers()), "variable_identifiers"); err != nil {
		return none, nopace, err
	}
	for i, id := range req.GetVariableIdentifiers() {
		if id == "" {
			return none, nopace, invalidf("variable_identifiers[%d] is empty", i)
		}
	}
	heartbeat, err := durationFromProto(req.GetHeartbeatInterval(), "heartbeat_interval")
	if err != nil {
		return none, nopace, err
	}
	if heartbeat == 0 {
		heartbeat = s.heartbeat
	}
	heartbeat = max(heartbeat, MinHeartbeatInterval)
	if req.GetStartRevision() < 0 {
		return none, nopace, invalidf("start_revision %d is negative", req.GetStartRevision())
	}
	if req.StartRevision != nil && req.GetIncludeInitialValues() {
		return none, nopace, invalidf("start_revision and include_initial_values are exclusive: a resumed watch replays the changes it missed instead")
	}
	if req.GetMaxBatchSize() < 0 {
		return none, nopace, invalidf("max_batch_size %d is negative", req.GetMaxBatchSize())
	}
	delay, err := durationFromProto(req.GetMaxBatchDelay(), "max_batch_delay")
	if err != nil {
		return none, nopace, err
	}
	switch {
	case !batched && (delay > 0 || req.GetMaxBatchSize() > 0):
		return none, nopace, invalidf("max_batch_size and max_batch_delay apply to WatchVariablesBatched only")
	case delay > MaxBatchDelay:
		return none, nopace, invalidf("max_batch_delay %s is over the limit of %s", delay, MaxBatchDelay)
	}
	fill := int(req.GetMaxBatchSize())
	if fill == 0 {
		fill = DefaultMaxBatchSize
	}
	return engine.WatchRequest{
		Session:              req.GetSessionId(),
		Variables:            req.GetVariableIdentifiers(),
		Pattern:              req.GetPattern(),
		IncludeInitialValues: req.GetIncludeInitialValues(),
		Resume:               req.StartRevision != nil,
		StartRevision:        req.GetStartRevision(),
		Coalesce:             req.GetCoalesce(),
		Incarnation:          req.GetIncarnation(),
	}, pacing{heartbeat: heartbeat, linger: delay, fill: fill}, nil
}

// openedWatch is a registered watch, ready to be pumped: WatchVariables,
// WatchVariablesBatched and each watch of a multiplexed Watch stream open
// theirs with openWatch.
type openedWatch struct {
	src      source
	pace     pacing
	greet    bool // no initial values: a heartbeat tells the position at once
	filtered bool
	snapshot int64
	// from is the revision the client has every change up to before the
	// watch sends anything: the start revision of a resume, 0 for a
	// snapshot (its initial values are not there yet), else the snapshot.
	// An end before anything more went out names it as resume_revision.
	from        int64
	incarnation string
	log         hclog.Logger
	close       func() // releases the subscription (or chain membership) and the stream slot
}

// openWatch validates req and registers its watch: its stream slot, then
// a subscription, or a membership of its filter chain's feed. onReady,
// when not nil, is called whenever the watch's source may have something
// to drain (engine.WatchRequest.OnReady). Errors are gRPC statuses.
func (s *Server) openWatch(ctx context.Context, req *pb.WatchVariablesRequest, batched bool, onReady func()) (*openedWatch, error) {
	wreq, pace, err := s.watchRequestFromProto(req, batched)
	if err != nil {
		return nil, err
	}
	wreq.OnReady = onReady
	release, err := s.acquireStream(ctx, wreq.Session)
	if err != nil {
		return nil, err
	}
	chain, err := s.acquireChain(ctx, req)
	if err != nil {
		release()
		return nil, err
	}
	rpc := "WatchVariables"
	switch {
	case onReady != nil:
		rpc = "Watch"
	case batched:
		rpc = "WatchVariablesBatched"
	}
	if chain != nil {
		w, err := s.openFiltered(ctx, wreq, pace, chain)
		if err != nil {
			chain.Release()
			release()
			return nil, err
		}
		untrack := s.stats.track(w.src, wreq.Session, rpc)
		inner := w.close
		w.close = func() { untrack(); inner(); chain.Release(); release() }
		return w, nil
	}
	sub, err := s.watch(ctx, wreq)
	if err != nil {
		release()
		return nil, toStatus(err)
	}
	untrack := s.stats.track(sub, wreq.Session, rpc)
	log := s.log.With("session", wreq.Session, "snapshot_revision", sub.SnapshotRevision())
	log.Debug("watch started", "variables", len(wreq.Variables), "pattern", wreq.Pattern, "batched", batched, "heartbeat", pace.heartbeat,
		"resume", wreq.Resume, "start_revision", wreq.StartRevision, "coalesce", wreq.Coalesce)
	return &openedWatch{src: sub, pace: pace, greet: !wreq.IncludeInitialValues, snapshot: sub.SnapshotRevision(),
		from: startPosition(wreq, sub.SnapshotRevision()), incarnation: sub.Incarnation(), log: log,
		close: func() { untrack(); sub.Close(); release() }}, nil
}

// startPosition is openedWatch.from for a watch of req at snapshot.
func startPosition(req engine.WatchRequest, snapshot int64) int64 {
	switch {
	case req.Resume:
		return req.StartRevision
	case req.IncludeInitialValues:
		return 0
	}
	return snapshot
}

// serveWatch runs one watch stream on the handler's goroutine, which is the
// only goroutine that ever sends on stream.
func (s *Server) serveWatch(req *pb.WatchVariablesRequest, stream grpc.ServerStream, batched bool, send func([]engine.Event) error) (err error) {
	s.streams.Add(1)
	defer s.streams.Add(-1)
	defer func() { s.stats.ended(err) }()

	ctx := stream.Context()
	w, err := s.openWatch(ctx, req, batched, nil)
	if err != nil {
		return err
	}
	defer w.close()
	if err := stream.SendHeader(watchHeader(w.snapshot, w.incarnation)); err != nil {
		w.log.Debug("watch ended: sending headers failed", "error", err)
		return err
	}
	delivered, end := s.pump(ctx, w.src, w.pace, w.greet, w.from, send)
	return s.endStatus(ctx, w.log, delivered, end, w.filtered)
}

// endStatus is the status a watch stream ends with, given why its pump
// stopped. Ends caused by the client (gone, or its session closed) are
// logged at Debug, the rest at Warn, except a deliberate server shutdown.
// A filtered stream cannot resume with start_revision (see filter.go), so
// its message says to start over with initial values instead.
func (s *Server) endStatus(ctx context.Context, log hclog.Logger, delivered int64, end error, filtered bool) error {
	var fault *plugins.FaultError
	resume := "every change up to revision " + strconv.FormatInt(delivered, 10) +
		" was delivered; resume with start_revision=" + strconv.FormatInt(delivered, 10)
	if filtered {
		resume = "every change up to revision " + strconv.FormatInt(delivered, 10) +
			" was delivered; filtered watches cannot resume with start_revision, watch again with include_initial_values"
	}
	switch {
	case errors.Is(end, engine.ErrSessionClosed):
		log.Debug("watch ended: session closed", "delivered", delivered)
		return nil
	case errors.Is(end, engine.ErrSlowConsumer):
		log.Warn("watch ended: slow consumer cut off", "delivered", delivered)
		return endWith(ReasonSlowConsumer, "watch fell too far behind and was cut off: "+resume, delivered)
	case errors.Is(end, errShutdown):
		log.Debug("watch ended: server shutting down", "delivered", delivered)
		return endWith(ReasonShuttingDown, "server is shutting down: "+resume, delivered)
	case errors.As(end, &fault):
		log.Warn("watch ended: filter failed", "delivered", delivered, "filter", fault.Plugin, "kind", fault.Kind.String(), "error", fault.Err)
		return endWith(ReasonFilterFailed, "filter "+fault.Plugin+" failed ("+fault.Kind.String()+": "+fault.Err.Error()+
			") and its on_error policy is close: "+resume, delivered)
	case errors.Is(end, plugins.ErrClosed):
		log.Debug("watch ended: filters closed", "delivered", delivered)
		return endWith(ReasonShuttingDown, "server is shutting down: "+resume, delivered)
	case errors.Is(end, engine.ErrClosed):
		log.Warn("watch ended: engine closed", "delivered", delivered)
		return endWith(ReasonShuttingDown, "server is shutting down: "+resume, delivered)
	case ctx.Err() != nil:
		log.Debug("watch ended: client gone", "delivered", delivered, "reason", ctx.Err())
		return toStatus(status.FromContextError(ctx.Err()).Err())
	case status.Code(end) != codes.Unknown:
		log.Debug("watch ended: send failed", "delivered", delivered, "error", end)
		return toStatus(end)
	}
	log.Warn("watch ended", "delivered", delivered, "error", end)
	return toStatus(end)
}

// endWith is a stream-ending status that names, in its message and in an
// ErrorInfo detail, the revision to resume from.
func endWith(reason, msg string, delivered int64) error {
	return statusError(reason, msg, map[string]string{"resume_revision": strconv.FormatInt(delivered, 10)})
}
