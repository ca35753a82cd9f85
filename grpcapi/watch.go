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
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// SnapshotRevisionHeader is the response header every watch stream sends
// as soon as its subscription is registered, carrying the snapshot
// revision. A client that waits for the headers (grpc.ClientStream.Header)
// knows that every change made after that point reaches the stream, even
// when it asked for no initial values and no update has arrived yet.
const SnapshotRevisionHeader = "varwatch-snapshot-revision"

// errShutdown ends a pump when Server.Shutdown is called.
var errShutdown = errors.New("server is shutting down")

// WatchVariables streams one VariableUpdate per message: the initial values
// and initial_values_complete if asked (else a heartbeat at the snapshot
// revision), then every change, with heartbeats at the interval. See pump
// for the guarantees and endStatus for how a stream ends.
func (s *Server) WatchVariables(req *pb.WatchVariablesRequest, stream grpc.ServerStreamingServer[pb.VariableUpdate]) error {
	return s.serveWatch(req, stream, false, func(evs []engine.Event) error {
		for i := range evs {
			if err := stream.Send(eventToProto(&evs[i])); err != nil {
				return err
			}
		}
		return nil
	})
}

// WatchVariablesBatched streams the same updates as WatchVariables, but
// each message carries everything that was waiting when the sender woke,
// up to max_batch_size updates (DefaultMaxBatchSize when unset). Larger
// drains are split into several messages at revision boundaries, so the
// updates of one atomic set share a message unless that set alone exceeds
// max_batch_size, which is a hard limit.
func (s *Server) WatchVariablesBatched(req *pb.WatchVariablesRequest, stream grpc.ServerStreamingServer[pb.VariableUpdateBatch]) error {
	size := int(req.GetMaxBatchSize())
	if size == 0 {
		size = DefaultMaxBatchSize
	}
	return s.serveWatch(req, stream, true, func(evs []engine.Event) error {
		for len(evs) > 0 {
			n := batchCut(evs, size)
			batch := &pb.VariableUpdateBatch{Updates: make([]*pb.VariableUpdate, n)}
			for i := range n {
				batch.Updates[i] = eventToProto(&evs[i])
			}
			if err := stream.Send(batch); err != nil {
				return err
			}
			evs = evs[n:]
		}
		return nil
	})
}

// batchCut returns how many of evs (ordered by revision) go into the next
// message of at most size updates: all of them if they fit, else as many as
// fit without splitting a revision, else size (a single revision larger
// than size has to be split).
func batchCut(evs []engine.Event, size int) int {
	if len(evs) <= size {
		return len(evs)
	}
	for cut := size; cut > 0; cut-- {
		if evs[cut].Revision != evs[cut-1].Revision {
			return cut
		}
	}
	return size
}

// watchRequestFromProto validates a watch request and maps it to the
// engine. Fields in the wire contract that are not served yet answer
// UNIMPLEMENTED naming the field, rather than being silently ignored.
// options is accepted and ignored (the seed's "future extensions" map).
func (s *Server) watchRequestFromProto(req *pb.WatchVariablesRequest, batched bool) (engine.WatchRequest, time.Duration, error) {
	var none engine.WatchRequest
	if req.GetSessionId() == "" {
		return none, 0, invalidf("session_id is empty")
	}
	for i, id := range req.GetVariableIdentifiers() {
		if id == "" {
			return none, 0, invalidf("variable_identifiers[%d] is empty", i)
		}
	}
	heartbeat, err := durationFromProto(req.GetHeartbeatInterval(), "heartbeat_interval")
	if err != nil {
		return none, 0, err
	}
	if heartbeat == 0 {
		heartbeat = s.heartbeat
	}
	heartbeat = max(heartbeat, MinHeartbeatInterval)
	if req.GetStartRevision() < 0 {
		return none, 0, invalidf("start_revision %d is negative", req.GetStartRevision())
	}
	if req.GetMaxBatchSize() < 0 {
		return none, 0, invalidf("max_batch_size %d is negative", req.GetMaxBatchSize())
	}
	delay, err := durationFromProto(req.GetMaxBatchDelay(), "max_batch_delay")
	if err != nil {
		return none, 0, err
	}
	switch {
	case req.StartRevision != nil:
		return none, 0, unimplementedf("start_revision (resuming a watch) is not supported yet; leave it unset to watch from now")
	case req.GetCoalesce():
		return none, 0, unimplementedf("coalesce is not supported yet; omit it")
	case len(req.GetFilters()) > 0:
		return none, 0, unimplementedf("filters are not supported yet; omit them")
	case batched && delay > 0:
		return none, 0, unimplementedf("max_batch_delay is not supported yet; omit it (batches are sent as soon as updates are ready)")
	}
	return engine.WatchRequest{
		Session:              req.GetSessionId(),
		Variables:            req.GetVariableIdentifiers(),
		Pattern:              req.GetPattern(),
		IncludeInitialValues: req.GetIncludeInitialValues(),
	}, heartbeat, nil
}

// serveWatch runs one watch stream on the handler's goroutine, which is the
// only goroutine that ever sends on stream.
func (s *Server) serveWatch(req *pb.WatchVariablesRequest, stream grpc.ServerStream, batched bool, send func([]engine.Event) error) error {
	s.streams.Add(1)
	defer s.streams.Add(-1)

	wreq, heartbeat, err := s.watchRequestFromProto(req, batched)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	sub, err := s.backend.Watch(ctx, wreq)
	if err != nil {
		return toStatus(err)
	}
	defer sub.Close()

	log := s.log.With("session", wreq.Session, "snapshot_revision", sub.SnapshotRevision())
	log.Debug("watch started", "variables", len(wreq.Variables), "pattern", wreq.Pattern, "batched", batched, "heartbeat", heartbeat)
	if err := stream.SendHeader(metadata.Pairs(SnapshotRevisionHeader, strconv.FormatInt(sub.SnapshotRevision(), 10))); err != nil {
		log.Debug("watch ended: sending headers failed", "error", err)
		return err
	}

	delivered, end := s.pump(ctx, sub, heartbeat, !wreq.IncludeInitialValues, send)
	return s.endStatus(ctx, log, delivered, end)
}

// pump moves events from sub to send until the subscription or the stream
// ends, and returns the last revision delivered with the reason it stopped.
//
// It keeps the watch guarantees by construction: Drain hands out events in
// revision order, each exactly once, with every event of an atomic set in
// the same drain; and a heartbeat is built only after everything drained so
// far was sent, so its revision (Subscription.HeartbeatRevision) never runs
// ahead of what the client has.
//
// With greet (a watch without initial values), a heartbeat goes out at
// once: it tells the client in-band from which revision on the stream is
// complete, as initial_values_complete does for a watch with initial
// values, so a client can resume from it even if no change ever came.
//
// # Notes
//
// Runs on the stream's handler goroutine only, which owns spare and
// delivered. It never blocks the engine: a client that reads too slowly
// lets its subscription's buffer fill until the engine cuts it off with
// ErrSlowConsumer.
func (s *Server) pump(ctx context.Context, sub *engine.Subscription, every time.Duration, greet bool, send func([]engine.Event) error) (delivered int64, end error) {
	delivered = sub.SnapshotRevision()
	deliver := func(evs []engine.Event) error {
		if err := send(evs); err != nil {
			return err
		}
		delivered = max(delivered, evs[len(evs)-1].Revision)
		return nil
	}
	heartbeat := func() error { return deliver([]engine.Event{sub.Heartbeat(s.now())}) }

	if greet {
		if err := heartbeat(); err != nil {
			return delivered, err
		}
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	var spare []engine.Event
	for {
		// Drain takes spare over as the subscription's next buffer and
		// hands back evs, which is ours until it is passed as spare; so
		// spare is always the slice of the latest Drain, once sent.
		evs, err := sub.Drain(spare)
		spare = nil
		if err != nil {
			return delivered, err
		}
		if len(evs) > 0 {
			if err := deliver(evs); err != nil {
				return delivered, err
			}
			spare = evs
			// Drain again before sleeping (more may wait, or the end
			// reason), but do not let a steady flow starve heartbeats or
			// hide a gone client.
			select {
			case <-ticker.C:
				if err := heartbeat(); err != nil {
					return delivered, err
				}
			case <-ctx.Done():
				return delivered, ctx.Err()
			case <-s.shutdown:
				return delivered, errShutdown
			default:
			}
			continue
		}
		spare = evs
		select {
		case <-sub.Ready():
		case <-ticker.C:
			if err := heartbeat(); err != nil {
				return delivered, err
			}
		case <-ctx.Done():
			return delivered, ctx.Err()
		case <-s.shutdown:
			return delivered, errShutdown
		}
	}
}

// endStatus is the status a watch stream ends with, given why its pump
// stopped. Ends caused by the client (gone, or its session closed) are
// logged at Debug, the rest at Warn, except a deliberate server shutdown.
func (s *Server) endStatus(ctx context.Context, log hclog.Logger, delivered int64, end error) error {
	resume := "every change up to revision " + strconv.FormatInt(delivered, 10) +
		" was delivered; resume with start_revision=" + strconv.FormatInt(delivered, 10)
	switch {
	case errors.Is(end, engine.ErrSessionClosed):
		log.Debug("watch ended: session closed", "delivered", delivered)
		return nil
	case errors.Is(end, engine.ErrSlowConsumer):
		log.Warn("watch ended: slow consumer cut off", "delivered", delivered)
		return status.Error(codes.ResourceExhausted, "watch fell too far behind and was cut off: "+resume)
	case errors.Is(end, errShutdown):
		log.Debug("watch ended: server shutting down", "delivered", delivered)
		return status.Error(codes.Unavailable, "server is shutting down: "+resume)
	case errors.Is(end, engine.ErrClosed):
		log.Warn("watch ended: engine closed", "delivered", delivered)
		return status.Error(codes.Unavailable, "server is shutting down: "+resume)
	case ctx.Err() != nil:
		log.Debug("watch ended: client gone", "delivered", delivered, "reason", ctx.Err())
		return status.FromContextError(ctx.Err()).Err()
	case status.Code(end) != codes.Unknown:
		log.Debug("watch ended: send failed", "delivered", delivered, "error", end)
		return end
	}
	log.Warn("watch ended", "delivered", delivered, "error", end)
	return toStatus(end)
}
