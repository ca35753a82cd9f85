package client

import (
	"context"
	"io"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// MuxQueueLimit bounds how many updates may wait for one multiplexed watch
// whose caller does not call Next: past it the watch is cancelled on the
// stream and resumes, as the server would cut off a slow consumer, so that
// one slow reader never holds up the other watches of its stream nor grows
// the client's memory without bound. A variable, so tests can shrink it.
var MuxQueueLimit = 1 << 16

// mux shares one Watch stream among a Client's watches: a watch is a
// create on it, its updates are the events with its id, and its end is
// its WatchEnded. The stream opens with the first watch and closes with
// the last; a broken stream fails every watch on it, and each resumes on
// the next stream by its own rules (Watch).
type mux struct {
	bridge pb.UnifiedBridgeClient

	mu     sync.Mutex // guards cur, nextID and every muxStream's subs and err
	cur    *muxStream // the stream new watches go on; nil: none open
	nextID int64
}

// muxStream is one Watch stream of a mux.
type muxStream struct {
	m      *mux
	stream pb.UnifiedBridge_WatchClient
	cancel context.CancelFunc
	sendMu sync.Mutex // one sender at a time
	subs   map[int64]*muxSub
	done   bool // broken or closed: no new watch goes on it
}

// muxSub is one watch on a mux stream, as its Watch reads it.
type muxSub struct {
	id    int64
	s     *muxStream
	ready chan struct{} // capacity 1: updates or the end arrived

	mu  sync.Mutex // guards q, err and registered
	q   []*pb.VariableUpdate
	err error // the end, once known; Next returns it after q

	// answered is closed once the server answered the create: with
	// WatchCreated (registered), or by ending the watch or the stream
	// before that (not registered).
	answered   chan struct{}
	registered bool

	incoming []*pb.VariableUpdate // gathered by the stream's reader for one response; the reader's own
}

// open creates a watch for req on the current stream, opening one if
// needed. It does not wait for the server: errors, even opening the
// stream, come out of next.
func (m *mux) open(req *pb.WatchVariablesRequest, view pb.View) *muxSub {
	m.mu.Lock()
	s := m.cur
	if s == nil {
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := m.bridge.Watch(ctx)
		if err != nil {
			m.mu.Unlock()
			cancel()
			sub := &muxSub{ready: make(chan struct{}, 1), answered: make(chan struct{})}
			sub.fail(err)
			return sub
		}
		s = &muxStream{m: m, stream: stream, cancel: cancel, subs: map[int64]*muxSub{}}
		m.cur = s
		go s.read()
	}
	m.nextID++
	sub := &muxSub{id: m.nextID, s: s, ready: make(chan struct{}, 1), answered: make(chan struct{})}
	s.subs[sub.id] = sub
	m.mu.Unlock()
	// A failed send means a broken stream, which read reports to sub.
	_ = s.send(&pb.WatchRequest{Request: &pb.WatchRequest_Create{Create: &pb.WatchCreate{WatchId: sub.id, Request: req, View: view}}})
	return sub
}

func (s *muxStream) send(req *pb.WatchRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(req)
}

// read hands each watch its events until the stream breaks: a response's
// updates for one watch in one push (one lock and one wake per watch per
// response, not per update: a change is often for hundreds of them).
func (s *muxStream) read() {
	var touched []*muxSub
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			if err == io.EOF {
				err = status.Error(codes.Unavailable, "watch stream ended")
			}
			s.m.mu.Lock()
			s.retire()
			subs := s.subs
			s.subs = nil
			s.m.mu.Unlock()
			for _, sub := range subs {
				sub.fail(err)
			}
			s.cancel()
			return
		}
		s.m.mu.Lock()
		for _, ev := range resp.GetEvents() {
			for _, id := range ev.GetWatchIds() {
				sub := s.subs[id]
				if sub == nil {
					continue // closed by its watch meanwhile
				}
				switch e := ev.GetEvent().(type) {
				case *pb.WatchEvent_Created:
					sub.answer(true)
				case *pb.WatchEvent_Update:
					if len(sub.incoming) == 0 {
						touched = append(touched, sub)
					}
					sub.incoming = append(sub.incoming, e.Update)
				case *pb.WatchEvent_Ended:
					delete(s.subs, id)
					sub.flush() // what came before the end, first
					sub.fail(endedStatus(e.Ended))
				}
			}
		}
		for i, sub := range touched {
			if !sub.flush() {
				delete(s.subs, sub.id)
				go s.cancelWatch(sub.id)
			}
			touched[i] = nil
		}
		touched = touched[:0]
		if len(s.subs) == 0 {
			s.close()
		}
		s.m.mu.Unlock()
	}
}

// retire takes s out of use for new watches. With m.mu held.
func (s *muxStream) retire() {
	s.done = true
	if s.m.cur == s {
		s.m.cur = nil
	}
}

// close ends s once no watch is left on it. With m.mu held.
func (s *muxStream) close() {
	s.retire()
	s.cancel()
}

func (s *muxStream) cancelWatch(id int64) {
	_ = s.send(&pb.WatchRequest{Request: &pb.WatchRequest_Cancel{Cancel: &pb.WatchCancel{WatchId: id}}})
}

// flush queues what the reader gathered for the watch; it reports false,
// having ended the watch, when the queue would pass MuxQueueLimit with
// updates still waiting in it.
func (sub *muxSub) flush() bool {
	in := sub.incoming
	if len(in) == 0 {
		return true
	}
	defer func() { // in's backing array is gathered into again
		clear(in)
		sub.incoming = in[:0]
	}()
	sub.mu.Lock()
	// A response alone always goes in: one message's worth (about 1 MiB)
	// over the limit at most, and a watch whose replay is larger than the
	// limit still makes progress.
	if len(sub.q) > 0 && len(sub.q)+len(in) > MuxQueueLimit {
		sub.mu.Unlock()
		sub.fail(slowReader())
		return false
	}
	sub.q = append(sub.q, in...)
	sub.mu.Unlock()
	sub.signal()
	return true
}

// fail records the watch's end, once.
func (sub *muxSub) fail(err error) {
	sub.mu.Lock()
	if sub.err == nil {
		sub.err = err
	}
	sub.mu.Unlock()
	sub.answer(false)
	sub.signal()
}

// answer records the server's answer to the create, the first time.
func (sub *muxSub) answer(registered bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	select {
	case <-sub.answered:
	default:
		sub.registered = registered
		close(sub.answered)
	}
}

// awaitCreated waits for the server's answer to the create, and reports
// whether the watch was registered.
func (sub *muxSub) awaitCreated(ctx context.Context) (bool, error) {
	select {
	case <-sub.answered:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.registered, nil
}

func (sub *muxSub) signal() {
	select {
	case sub.ready <- struct{}{}:
	default:
	}
}

// next returns every update waiting, or waits for some; after the last
// one, the watch's end.
func (sub *muxSub) next(ctx context.Context) ([]*pb.VariableUpdate, error) {
	for {
		sub.mu.Lock()
		q, err := sub.q, sub.err
		sub.q = nil
		sub.mu.Unlock()
		if len(q) > 0 {
			return q, nil
		}
		if err != nil {
			return nil, err
		}
		select {
		case <-sub.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// close ends the watch on its stream (if it still runs there), and the
// stream with its last watch. Idempotent.
func (sub *muxSub) close() {
	s := sub.s
	if s == nil {
		return
	}
	s.m.mu.Lock()
	_, live := s.subs[sub.id]
	if live {
		delete(s.subs, sub.id)
	}
	last := live && len(s.subs) == 0
	if last {
		s.close()
	}
	s.m.mu.Unlock()
	if live && !last {
		go s.cancelWatch(sub.id)
	}
	sub.fail(context.Canceled)
}

// endedStatus is the status error a WatchEnded stands for, with its
// ErrorInfo, as WatchVariables would have ended.
func endedStatus(e *pb.WatchEnded) error {
	code := codes.Code(e.GetCode())
	if code == codes.OK {
		return io.EOF // after session_closed, which ends the Watch first
	}
	st := status.New(code, e.GetMessage())
	if e.GetReason() != "" {
		if with, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.GetReason(), Domain: errorDomain, Metadata: e.GetMetadata()}); err == nil {
			st = with
		}
	}
	return st.Err()
}

// slowReader is the end of a multiplexed watch whose caller fell
// MuxQueueLimit updates behind: resumable, like the server's cut-off.
func slowReader() error {
	st := status.New(codes.ResourceExhausted, "the watch's caller fell too far behind its stream; resuming")
	if with, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reasonSlowConsumer, Domain: errorDomain}); err == nil {
		st = with
	}
	return st.Err()
}
