package grpcapi

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// Defaults of the write stream's window: how many requests, and how many
// bytes of them, the server holds unanswered before it stops reading
// (Config.WriteWindow, Config.WriteWindowBytes).
const (
	DefaultWriteWindow      = 64
	DefaultWriteWindowBytes = 8 << 20
)

// WriteVariables serves an ordered write stream (see the proto).
//
// Two goroutines serve it: a receiver that reads and converts requests,
// and the handler's, which applies whatever the receiver queued since it
// last looked in one engine call (engine.SetBatches: in order, one
// wake-up per few thousand writes) and answers each request in order; it
// is the only one that sends. The receiver reads a request only while the
// window has room (fewer than WriteWindow requests and WriteWindowBytes
// bytes unanswered), so the server holds at most one request past the
// window, and a client that sends faster than the engine applies is held
// back by HTTP/2 flow control.
//
// What the server applied is always a prefix of what the client sent:
// requests are applied in order, the engine applies a call's batches as a
// prefix (engine.SetBatches), and the handler never applies a request
// before every earlier one was applied or answered with its failure.
func (s *Server) WriteVariables(stream pb.UnifiedBridge_WriteVariablesServer) error {
	s.writeStreams.Add(1)
	defer s.writeStreams.Add(-1)
	// Every end carries its reason, also one the transport gave (the
	// client gone, the connection closing).
	return toStatus(s.writeVariables(stream))
}

func (s *Server) writeVariables(stream pb.UnifiedBridge_WriteVariablesServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	session := first.GetSessionId()
	if session == "" {
		return invalidf("session_id is empty: the first request of a write stream names its session")
	}
	// The session must exist (and be the caller's) before anything is
	// read on: a stream to nowhere ends at once, not after its window.
	if _, err := s.backend.GetSession(ctx, session); err != nil {
		return toStatus(err)
	}
	w := &writeStream{s: s, stream: stream, session: session,
		win:   newWriteWindow(limitOr(s.writeWindow, DefaultWriteWindow), limitOr(s.writeWindowBytes, DefaultWriteWindowBytes)),
		done:  make(chan struct{}),
		queue: make(chan *writeBatch, limitOr(s.writeWindow, DefaultWriteWindow)+1)}
	defer close(w.done)
	b := w.prepare(1, first)
	b.size = proto.Size(first)
	w.win.take(b.size)
	w.queue <- b
	go w.receive(2)
	return w.run(ctx)
}

// writeStream is one WriteVariables stream.
type writeStream struct {
	s       *Server
	stream  pb.UnifiedBridge_WriteVariablesServer
	session string
	win     *writeWindow
	queue   chan *writeBatch // from the receiver to the handler, in order
	done    chan struct{}    // closed when the handler returns
}

// writeBatch is one request, converted, or the end of the requests.
type writeBatch struct {
	seq     uint64
	size    int // its bytes, in the window
	atomic  bool
	small   bool
	idents  []string                // updates' identifiers, for the results
	sets    []engine.SetRequest     // the well-formed updates
	index   []int                   // sets[j] answers updates[index[j]]
	results []*pb.SetVariableResult // the malformed ones answered already
	// failAll, when not nil, fails every update: an atomic batch with a
	// malformed update applies nothing.
	failAll error
	// end, when not nil, ends the stream once the batches before it are
	// answered: io.EOF (the client closed its side), a receive error, or a
	// request that breaks the stream's rules.
	end error
}

// receive reads requests seq, seq+1, ... and queues them until the
// stream ends.
func (w *writeStream) receive(seq uint64) {
	for ; ; seq++ {
		if !w.win.wait(w.done) {
			return
		}
		req, err := w.stream.Recv()
		var b *writeBatch
		if err != nil {
			b = &writeBatch{end: err}
		} else {
			b = w.prepare(seq, req)
			b.size = proto.Size(req)
			w.win.take(b.size)
		}
		select {
		case w.queue <- b:
		case <-w.done:
			return
		}
		if b.end != nil {
			return
		}
	}
}

// prepare converts request seq, off the handler's goroutine.
func (w *writeStream) prepare(seq uint64, req *pb.WriteVariablesRequest) *writeBatch {
	b := &writeBatch{seq: seq, atomic: req.GetAtomic(), small: req.GetSmallAcks()}
	if id := req.GetSessionId(); id != "" && id != w.session {
		b.end = invalidf("request %d names session_id %q; this write stream writes to %q", seq, id, w.session)
		return b
	}
	updates := req.GetUpdates()
	if err := w.s.checkIdentifiers(len(updates), "updates"); err != nil {
		b.end = err
		return b
	}
	b.idents = make([]string, len(updates))
	b.results = make([]*pb.SetVariableResult, len(updates))
	b.sets = make([]engine.SetRequest, 0, len(updates))
	b.index = make([]int, 0, len(updates))
	for i, u := range updates {
		b.idents[i] = u.GetVariableIdentifier()
		set, err := setItemFromProto(w.session, i, u)
		if err != nil {
			if b.atomic {
				b.failAll, b.sets, b.index = err, nil, nil
				return b
			}
			b.results[i] = failedResult(b.idents[i], err)
			continue
		}
		b.sets = append(b.sets, set)
		b.index = append(b.index, i)
	}
	return b
}

// run applies and answers the queued batches until the stream ends.
func (w *writeStream) run(ctx context.Context) error {
	var batches []*writeBatch
	var reqs []engine.SetManyRequest
	for {
		batches = batches[:0]
		select {
		case b := <-w.queue:
			batches = append(batches, b)
		case <-w.s.shutdown:
			return shuttingDown()
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	more:
		for {
			select {
			case b := <-w.queue:
				batches = append(batches, b)
			default:
				break more
			}
		}
		// Everything up to the first end is applied, then the end ends
		// the stream.
		var end error
		for i, b := range batches {
			if b.end != nil {
				end, batches = b.end, batches[:i]
				break
			}
		}
		reqs = reqs[:0]
		for _, b := range batches {
			req := engine.SetManyRequest{Session: w.session, Atomic: b.atomic}
			if b.failAll == nil {
				req.Sets = b.sets // empty: a barrier, answered with the revision
			}
			reqs = append(reqs, req)
		}
		var results []engine.BatchResult
		var pos uint64 // on a cluster: at or after every batch's position
		if len(reqs) > 0 {
			results = w.s.backend.SetBatches(engine.WithPosition(ctx, &pos), reqs)
		}
		for i, b := range batches {
			if err := w.answer(b, results[i], pos); err != nil {
				return err
			}
		}
		switch {
		case end == nil:
		case errors.Is(end, io.EOF):
			return nil
		default:
			return end
		}
	}
}

// answer sends b's response, or returns the error that ends the stream.
func (w *writeStream) answer(b *writeBatch, res engine.BatchResult, pos uint64) error {
	defer w.win.release(b.size)
	if res.Err != nil && endsWriteStream(res.Err) {
		return toStatus(res.Err)
	}
	resp := &pb.WriteVariablesResponse{Sequence: b.seq, Results: b.results, Revision: res.Revision, LogPosition: pos}
	fail := b.failAll
	if fail == nil {
		fail = res.Err // the whole batch failed: an atomic one, say
	}
	switch {
	case fail != nil:
		for i, ident := range b.idents {
			resp.Results[i] = failedResult(ident, fail)
		}
		if b.small {
			packAcks(resp, b, nil)
		}
	case b.small:
		packAcks(resp, b, res.Items)
	default:
		for j, item := range res.Items {
			i := b.index[j]
			if item.Err != nil {
				resp.Results[i] = failedResult(b.idents[i], item.Err)
				continue
			}
			resp.Results[i] = setResult(b.idents[i], item.SetResult, false)
		}
	}
	if b.small { // results hold only the failures, each with its index
		failures := resp.Results[:0]
		for i, r := range resp.Results {
			if r != nil {
				r.Index = int32(i)
				failures = append(failures, r)
			}
		}
		resp.Results = failures
	}
	return w.stream.Send(resp)
}

// packAcks answers b's applied updates as small acks: packed lists with a
// slot per update, and no message per update (each would cost the server
// an allocation and the client a decode).
func packAcks(resp *pb.WriteVariablesResponse, b *writeBatch, items []engine.SetItemResult) {
	n := len(b.idents)
	resp.VariableIds, resp.Versions, resp.Revisions = make([]string, n), make([]int64, n), make([]int64, n)
	for j, item := range items {
		i := b.index[j]
		if item.Err != nil {
			resp.Results[i] = failedResult(b.idents[i], item.Err)
			continue
		}
		resp.VariableIds[i], resp.Versions[i], resp.Revisions[i] = item.Variable.ID, item.Variable.Version, item.Revision
	}
}

// endsWriteStream reports whether a batch's failure is the stream's: its
// session is gone or not the caller's, or the server cannot write. Any
// other failure is the batch's own, answered in its results.
func endsWriteStream(err error) bool {
	for _, kind := range []error{engine.ErrSessionNotFound, engine.ErrPermissionDenied,
		engine.ErrClosed, engine.ErrUnavailable, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}

// shuttingDown ends a write stream when the server shuts down: what was
// answered was applied, the rest was not, and the client writes again
// after it reconnects.
func shuttingDown() error {
	return withInfo(status.New(codes.Unavailable, "the server is shutting down"), ReasonShuttingDown, nil).Err()
}

// writeWindow bounds the unanswered requests of a write stream, by count
// and bytes.
//
// # Notes
//
// Guarded by mu. One goroutine waits (the receiver), one releases (the
// handler): room, of capacity 1, wakes the waiter after a release.
type writeWindow struct {
	mu               sync.Mutex
	reqs, bytes      int
	maxReqs, maxByte int
	room             chan struct{}
}

func newWriteWindow(reqs, bytes int) *writeWindow {
	return &writeWindow{maxReqs: reqs, maxByte: bytes, room: make(chan struct{}, 1)}
}

// wait returns once another request may be read (false if done closed
// first). A negative bound is no bound.
func (w *writeWindow) wait(done <-chan struct{}) bool {
	for {
		w.mu.Lock()
		ok := (w.maxReqs < 0 || w.reqs < w.maxReqs) && (w.maxByte < 0 || w.bytes < w.maxByte)
		w.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-w.room:
		case <-done:
			return false
		}
	}
}

func (w *writeWindow) take(bytes int) {
	w.mu.Lock()
	w.reqs++
	w.bytes += bytes
	w.mu.Unlock()
}

func (w *writeWindow) release(bytes int) {
	w.mu.Lock()
	w.reqs--
	w.bytes -= bytes
	w.mu.Unlock()
	select {
	case w.room <- struct{}{}:
	default:
	}
}
