package grpcapi

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// Watch serves many watches on one bidi stream. The client creates each
// with a watch id of its choosing and may cancel it; each watch is opened
// exactly as WatchVariables opens its stream (openWatch) and keeps every
// guarantee of one, with its end reported as a WatchEnded event instead
// of a stream status.
//
// Two goroutines serve the stream: the handler's, the only one that sends
// (see mux.run), and a receiver that reads requests and opens watches. No
// goroutine per watch: a watch's subscription tells the mux when it has
// something (engine.WatchRequest.OnReady), and the sender drains the
// watches that said so, all into one response.
func (s *Server) Watch(stream pb.UnifiedBridge_WatchServer) error {
	s.streams.Add(1)
	defer s.streams.Add(-1)
	m := &mux{s: s, stream: stream, ctx: stream.Context(), wake: make(chan struct{}, 1),
		live: map[int64]*muxWatch{}, watches: map[int64]*muxWatch{}}
	m.out.observe = s.hist.muxResp
	go m.receive()
	// A send that failed returns gRPC's own status (the transport
	// closing): it gets its code's reason like every other end.
	return toStatus(m.run())
}

// mux is one Watch stream.
type mux struct {
	s      *Server
	stream pb.UnifiedBridge_WatchServer
	ctx    context.Context
	wake   chan struct{} // capacity 1: something below mu changed

	mu      sync.Mutex // guards everything down to closed
	live    map[int64]*muxWatch
	added   []*muxWatch // opened (or refused) by the receiver, not yet seen by the sender
	cancels []int64
	ready   []*muxWatch // signalled since the sender last looked
	recvEnd error       // why the receiver stopped (io.EOF: the client closed its side)
	closed  bool        // the sender has finished: the receiver closes what it opens

	// Owned by the sender (run).
	watches    map[int64]*muxWatch
	nextBeat   time.Time // the earliest heartbeat due; zero: none
	halfClosed bool      // the client sends no more requests
	out        muxResponse
	// scratch is the buffer every watch is drained into in turn: what a
	// drain returns is encoded into out at once, so one serves them all.
	scratch []engine.Event
}

// muxWatch is one watch of a mux.
type muxWatch struct {
	id     int64
	view   view
	w      *openedWatch // nil when refused
	refuse error        // why the create was refused
	queued atomic.Bool  // in mux.ready

	// Owned by the sender.
	delivered int64
	sentData  bool // data went out since the last heartbeat tick
	beatAt    time.Time
	// The watch's last entry in the round's messages being built: index
	// lastIdx of round lastGen-1 (see muxResponse; zero: none yet).
	lastGen, lastIdx int
}

// signal puts w on the ready list. Called by w's subscription, from the
// engine loop among others: it never blocks.
func (m *mux) signal(w *muxWatch) {
	// Load first: a watch already queued is the common case under load,
	// and a plain load is far cheaper than the swap (4% of the fan-out
	// row's CPU). A stale false only costs the swap below.
	if w.queued.Load() || w.queued.Swap(true) {
		return
	}
	m.mu.Lock()
	m.ready = append(m.ready, w)
	m.mu.Unlock()
	m.poke()
}

func (m *mux) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// receive reads the client's requests until the stream ends. Watches are
// opened here, in request order, so that the sender never waits for the
// engine; a create the server refuses is handed over too, to be answered
// in order with its WatchEnded.
func (m *mux) receive() {
	for {
		req, err := m.stream.Recv()
		if err != nil {
			m.stop(err)
			return
		}
		switch r := req.GetRequest().(type) {
		case *pb.WatchRequest_Create:
			if err := m.create(r.Create); err != nil {
				m.stop(err)
				return
			}
		case *pb.WatchRequest_Cancel:
			m.mu.Lock()
			m.cancels = append(m.cancels, r.Cancel.GetWatchId())
			m.mu.Unlock()
			m.poke()
		default:
			m.stop(invalidf("a WatchRequest must hold a create or a cancel"))
			return
		}
	}
}

// stop records why the receiver ended.
func (m *mux) stop(err error) {
	m.mu.Lock()
	m.recvEnd = err
	m.mu.Unlock()
	m.poke()
}

// create opens one watch. It fails (ending the whole stream) only for a
// watch id the client may not use; everything else wrong with the request
// is that watch's WatchEnded.
func (m *mux) create(c *pb.WatchCreate) error {
	id := c.GetWatchId()
	if id <= 0 {
		return invalidf("watch_id %d: a watch id must be positive", id)
	}
	w := &muxWatch{id: id, view: viewFull}
	m.mu.Lock()
	_, taken := m.live[id]
	if !taken {
		m.live[id] = w
	}
	m.mu.Unlock()
	if taken {
		return invalidf("watch_id %d is already in use on this stream", id)
	}
	req := c.GetRequest()
	switch {
	case req == nil:
		w.refuse = invalidf("watch %d: request is missing", id)
	case req.GetMaxBatchSize() != 0 || req.GetMaxBatchDelay() != nil:
		w.refuse = invalidf("watch %d: max_batch_size and max_batch_delay are for WatchVariablesBatched; Watch sends what is ready at once", id)
	}
	switch c.GetView() {
	case pb.View_VIEW_UNSPECIFIED, pb.View_VIEW_FULL:
	case pb.View_VIEW_VALUE:
		w.view = viewValue
	default:
		w.refuse = invalidf("watch %d: unknown view %d", id, c.GetView())
	}
	if w.refuse == nil {
		w.w, w.refuse = m.s.openWatch(m.ctx, req, false, func() { m.signal(w) })
	}
	m.mu.Lock()
	closed := m.closed
	if !closed {
		m.added = append(m.added, w)
	}
	m.mu.Unlock()
	if closed && w.w != nil {
		w.w.close()
	}
	m.poke()
	return nil
}

// run is the sender: each time something changed it takes the new,
// cancelled and ready watches, drains the ready ones and sends everything
// in as few responses as the size limits allow; heartbeats go out when
// due. It returns when the client is gone, the receiver failed, or the
// server shuts down (after telling every watch).
func (m *mux) run() (err error) {
	defer m.closeAll()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		done, err := m.round()
		if err != nil || done {
			return err
		}
		if !m.nextBeat.IsZero() {
			timer.Reset(time.Until(m.nextBeat))
		}
		woke := false
		select {
		case <-m.wake:
			woke = true
		case <-timer.C:
		case <-m.ctx.Done():
			return toStatus(status.FromContextError(m.ctx.Err()).Err())
		case <-m.s.shutdown:
			return m.shutdown()
		}
		timer.Stop()
		if !woke {
			continue
		}
		if d := m.s.pause(); d > 0 {
			// Overloaded: let what follows join this response (sendpace.go).
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-m.ctx.Done():
				return toStatus(status.FromContextError(m.ctx.Err()).Err())
			case <-m.s.shutdown:
				return m.shutdown()
			}
		}
	}
}

// shutdown ends every watch of the stream: the server is shutting down.
func (m *mux) shutdown() error {
	for _, w := range m.watches {
		m.end(w, errShutdown)
	}
	if err := m.flush(); err != nil {
		return err
	}
	return statusError(ReasonShuttingDown, "server is shutting down: every watch of the stream was ended with its resume_revision", nil)
}

// round does one turn of run's work, and reports whether the stream is
// done (the client closed its side and no watch is left) or why it must
// stop.
func (m *mux) round() (done bool, err error) {
	m.mu.Lock()
	added, cancels, ready, recvEnd := m.added, m.cancels, m.ready, m.recvEnd
	m.added, m.cancels, m.ready = nil, nil, nil
	m.mu.Unlock()

	now := m.s.now()
	for _, w := range added {
		m.start(w, now)
	}
	for _, id := range cancels {
		if w := m.watches[id]; w != nil {
			m.end(w, engine.ErrUnsubscribed)
		}
	}
	for _, w := range ready {
		w.queued.Store(false) // before draining: a later signal queues it again
		if m.watches[w.id] == w {
			m.drain(w)
		}
	}
	if !m.nextBeat.IsZero() && !now.Before(m.nextBeat) {
		m.heartbeats(now)
	}
	if err := m.flush(); err != nil {
		return false, err
	}
	switch {
	case recvEnd == nil:
	case errors.Is(recvEnd, io.EOF):
		// The client sends no more requests: serve what is left. The
		// receiver has stopped, so nothing more can be added.
		m.halfClosed = true
	case m.ctx.Err() != nil:
		return false, toStatus(status.FromContextError(m.ctx.Err()).Err())
	default:
		return false, toStatus(recvEnd)
	}
	return m.halfClosed && len(m.watches) == 0, nil
}

// start answers a new watch: created (then, without initial values, a
// heartbeat at the snapshot revision) or, when refused, ended.
func (m *mux) start(w *muxWatch, now time.Time) {
	if w.refuse != nil {
		m.s.stats.ended(w.refuse)
		m.out.control(w, fieldEnded, ended(w.refuse))
		m.forget(w)
		return
	}
	m.watches[w.id] = w
	w.delivered = w.w.from
	m.out.control(w, fieldCreated, &pb.WatchCreated{SnapshotRevision: w.w.snapshot, Incarnation: w.w.incarnation})
	if w.w.greet {
		m.heartbeat(w, now)
	}
	w.beatAt = now.Add(jitter(w.w.pace.heartbeat))
	if m.nextBeat.IsZero() || w.beatAt.Before(m.nextBeat) {
		m.nextBeat = w.beatAt
	}
	m.drain(w) // initial values or a replay may be waiting already
}

// drain moves what w's source holds into the response, or ends w.
func (m *mux) drain(w *muxWatch) {
	evs, err := w.w.src.Drain(m.scratch)
	m.scratch = evs
	if err != nil {
		m.end(w, err)
		return
	}
	if len(evs) == 0 {
		return
	}
	m.out.updates(w, evs)
	m.s.stats.sent(evs)
	m.s.hist.lag(evs)
	w.delivered = max(w.delivered, evs[len(evs)-1].Revision)
	w.sentData = true
	if ev := &evs[len(evs)-1]; ev.Type == engine.EventSessionClosed {
		// The source ends right after; say so now rather than next round.
		// (Nothing can follow the close but the end.)
		evs, err := w.w.src.Drain(m.scratch)
		m.scratch = evs
		if err != nil && len(evs) == 0 {
			m.end(w, err)
		}
	}
}

// heartbeats sends the heartbeats that are due and sets the next time.
func (m *mux) heartbeats(now time.Time) {
	m.nextBeat = time.Time{}
	for _, w := range m.watches {
		if !now.Before(w.beatAt) {
			if !w.sentData {
				m.heartbeat(w, now)
			}
			w.sentData = false
			w.beatAt = now.Add(jitter(w.w.pace.heartbeat))
		}
		if m.nextBeat.IsZero() || w.beatAt.Before(m.nextBeat) {
			m.nextBeat = w.beatAt
		}
	}
}

func (m *mux) heartbeat(w *muxWatch, now time.Time) {
	ev := w.w.src.Heartbeat(now)
	m.out.updates(w, []engine.Event{ev})
	m.s.stats.sent([]engine.Event{ev})
	w.delivered = max(w.delivered, ev.Revision)
}

// end ends w for reason: its last event, WatchEnded, carries the status
// WatchVariables would have ended with.
func (m *mux) end(w *muxWatch, reason error) {
	var st error
	if errors.Is(reason, engine.ErrUnsubscribed) {
		st = statusError(ReasonWatchCancelled, "watch cancelled", nil)
	} else {
		st = m.s.endStatus(m.ctx, w.w.log, w.delivered, reason, w.w.filtered)
	}
	m.s.stats.ended(st)
	m.out.control(w, fieldEnded, ended(st))
	delete(m.watches, w.id)
	w.w.close()
	m.forget(w)
}

// forget frees w's id for a new watch.
func (m *mux) forget(w *muxWatch) {
	m.mu.Lock()
	if m.live[w.id] == w {
		delete(m.live, w.id)
	}
	m.mu.Unlock()
}

// closeAll releases every watch when the stream ends, and makes the
// receiver release what it opens from now on.
func (m *mux) closeAll() {
	m.mu.Lock()
	m.closed = true
	added := m.added
	m.added = nil
	m.mu.Unlock()
	for _, w := range added {
		if w.w != nil {
			w.w.close()
		}
	}
	for _, w := range m.watches {
		m.s.stats.ended(m.ctx.Err())
		w.w.close()
	}
	clear(m.watches)
}

// flush sends what the response holds.
func (m *mux) flush() error {
	msgs := m.out.take()
	if len(msgs) > 0 {
		m.s.rate.sent(len(msgs), time.Now())
	}
	for _, msg := range msgs {
		if err := m.stream.SendMsg(&encodedMessage{msg}); err != nil {
			return err
		}
	}
	return nil
}

// ended is the WatchEnded of a status error (nil: OK).
func ended(err error) *pb.WatchEnded {
	st := status.Convert(err)
	e := &pb.WatchEnded{Code: int32(st.Code()), Message: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			e.Reason, e.Metadata = info.GetReason(), info.GetMetadata()
			break
		}
	}
	return e
}
