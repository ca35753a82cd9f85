package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// WriterOptions tune a Writer. The zero value is usable.
type WriterOptions struct {
	// Window is how many requests may be sent and not yet answered
	// (default 32). Past it, writes wait in the Writer, and Set blocks
	// once MaxBatch of them wait: the producer is held back rather than
	// buffered without bound.
	Window int
	// MaxBatch bounds the writes of one request (default 1000), and
	// MaxBatchBytes their encoded bytes (default 1 MiB).
	MaxBatch      int
	MaxBatchBytes int
	// FullAcks asks for the whole variable in every result; by default
	// results carry only its id, version and revision (small acks).
	FullAcks bool
	// Upsert makes every Set create its variable, of its value's type,
	// when the session has none of that name (see SetVariableRequest
	// create_type).
	Upsert bool
}

func (o WriterOptions) withDefaults() WriterOptions {
	if o.Window <= 0 {
		o.Window = 32
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1000
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 1 << 20
	}
	return o
}

// ErrWriterClosed is the error of a Set on a closed Writer.
var ErrWriterClosed = errors.New("client: writer closed")

// WriteError is how one write failed: the status it would have failed
// with as a call of its own, with its ErrorInfo reason and metadata.
// status.Code and status.FromError work on it.
type WriteError struct {
	Variable string
	Code     codes.Code
	Reason   string
	Metadata map[string]string
	Message  string
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("varwatch: write of %q failed: %s: %s", e.Variable, e.Code, e.Message)
}

// GRPCStatus is the write's failure as a status (without its details).
func (e *WriteError) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// StreamError ends every write a broken stream had not answered: whether
// each of those applied is unknown, except that what the server applied
// is a prefix of what was sent. It wraps the stream's status.
type StreamError struct{ Err error }

func (e *StreamError) Error() string { return "varwatch: write stream ended: " + e.Err.Error() }
func (e *StreamError) Unwrap() error { return e.Err }

// GRPCStatus is the stream's status.
func (e *StreamError) GRPCStatus() *status.Status { s, _ := status.FromError(e.Err); return s }

// Ack is how a write applied.
type Ack struct {
	// VariableID and Version are the variable's after the write;
	// Revision is the session revision the write was applied at.
	VariableID string
	Version    int64
	Revision   int64
	// Variable is the whole variable as written, with
	// WriterOptions.FullAcks only.
	Variable *pb.Variable
	// Position, from a node of a cluster, is a log position at or after
	// the write's: pass it to AtPosition (or WatchOptions.Position) on
	// another node to read the write there. 0 from one server.
	Position uint64
}

// Pending is the result of one write, known once the server answered it.
type Pending struct {
	group *ackGroup // the writes answered together with this one
	ack   Ack
	err   error
}

// ackGroup is the writes one request carries, which one response
// answers: one channel for all of them, so that a write costs no channel
// of its own. done is closed once every Pending of the group holds its
// result. Groups are formed as writes are queued (a write joins the last
// group until the sender takes it or it is full), so a Pending knows its
// group from the start.
type ackGroup struct {
	done  chan struct{}
	n     int // writes in the group
	bytes int // their encoded size
}

// Done is closed once the result is known.
func (p *Pending) Done() <-chan struct{} { return p.group.done }

// Wait returns the write's result (id, version and revision; the whole
// variable with FullAcks), or its *WriteError, or the *StreamError of the
// stream that broke before answering it.
func (p *Pending) Wait(ctx context.Context) (Ack, error) {
	select {
	case <-p.group.done:
		return p.ack, p.err
	case <-ctx.Done():
		return Ack{}, ctx.Err()
	}
}

// failed is a Pending that failed before it was queued.
func failed(err error) *Pending {
	g := &ackGroup{done: make(chan struct{})}
	close(g.done)
	return &Pending{group: g, err: err}
}

// Writer is an ordered write stream (WriteVariables) to one session. Set
// queues a write and returns at once; writes are sent in order in
// batches, as many as wait when the stream has room, and answered in
// order. Safe for concurrent use; the writes of one goroutine keep its
// order.
//
// # Notes
//
// Three goroutines share the stream: callers queue under mu, a sender (the
// only one that calls Send) takes what waits whenever fewer than Window
// requests are unanswered, and a receiver resolves each answer's writes.
// The sender and receiver run until the stream ends: Close the Writer (or
// end the context it was opened with) to stop them.
type Writer struct {
	opts    WriterOptions
	stream  pb.UnifiedBridge_WriteVariablesClient
	cancel  context.CancelFunc
	session string

	mu       sync.Mutex
	cond     *sync.Cond // signalled when anything below changes
	queued   []*pb.SetVariableRequest
	handles  []*Pending
	groups   []*ackGroup  // of queued, in order; the last may still grow
	inflight [][]*Pending // per unanswered request, in order
	last     *Pending     // the last write queued
	closing  bool         // Close was called: no more writes
	flushing int          // Flush calls waiting: send partial groups at once
	ended    error        // the stream's end, once known
	sentAny  bool

	stopped chan struct{} // closed when the receiver has ended
}

// Writer opens a write stream to session.
func (c *Client) Writer(ctx context.Context, session string, opts WriterOptions) (*Writer, error) {
	sctx, cancel := context.WithCancel(ctx)
	stream, err := c.WriteVariables(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	w := &Writer{opts: opts.withDefaults(), stream: stream, cancel: cancel, session: session, stopped: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.send()
	go w.receive()
	return w, nil
}

// Set queues a write of value to the variable named (or of that id).
func (w *Writer) Set(variable string, value *pb.Value) *Pending {
	return w.Write(&pb.SetVariableRequest{VariableIdentifier: variable, Value: value})
}

// Write queues a write (its session_id is ignored). It blocks while
// MaxBatch writes already wait to be sent.
func (w *Writer) Write(req *pb.SetVariableRequest) *Pending {
	upsert := w.opts.Upsert && req.GetCreateType() == pb.VariableType_VARIABLE_TYPE_UNSPECIFIED
	if upsert || req.GetSessionId() != "" { // the caller's request stays as it was
		req = proto.Clone(req).(*pb.SetVariableRequest)
		req.SessionId = ""
		if upsert {
			req.CreateType = typeOf(req.GetValue())
		}
	}
	size := proto.Size(req)
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.ended == nil && !w.closing && len(w.queued) >= w.opts.MaxBatch {
		w.cond.Wait()
	}
	switch {
	case w.closing:
		return failed(ErrWriterClosed)
	case w.ended != nil:
		return failed(&StreamError{Err: w.ended})
	}
	g := w.openGroup(size)
	g.n++
	g.bytes += size
	p := &Pending{group: g}
	w.queued = append(w.queued, req)
	w.handles = append(w.handles, p)
	w.last = p
	w.cond.Broadcast()
	return p
}

// openGroup returns the group a write of size bytes joins.
func (w *Writer) openGroup(size int) *ackGroup {
	if n := len(w.groups); n > 0 {
		g := w.groups[n-1]
		if g.n < w.opts.MaxBatch && g.bytes+size <= w.opts.MaxBatchBytes {
			return g
		}
	}
	g := &ackGroup{done: make(chan struct{})}
	w.groups = append(w.groups, g)
	return g
}

// Flush waits until every write queued so far is answered. It returns
// the stream's error if the stream broke; the writes' own failures are
// on their Pending.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	last, ended := w.last, w.ended
	w.flushing++
	w.cond.Broadcast()
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.flushing--
		w.mu.Unlock()
	}()
	if last == nil {
		if ended == nil || errors.Is(ended, errClean) {
			return nil
		}
		return &StreamError{Err: ended}
	}
	if _, err := last.Wait(ctx); err != nil {
		var se *StreamError
		if errors.As(err, &se) || errors.Is(err, ctx.Err()) {
			return err
		}
	}
	return nil
}

// Close flushes, ends the stream and waits for it to end. Writes queued
// after Close fail with ErrWriterClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	w.closing = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.stopped
	w.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if errors.Is(w.ended, errClean) {
		return nil
	}
	return w.ended
}

// errClean is the end of a stream that Close ended and the server
// answered fully.
var errClean = errors.New("client: write stream closed")

// eagerRequests is how many requests may be in flight before the
// sender waits for a group to fill: a few keep the server busy, and past
// them a write waits at most one round trip, while its request fills, so
// that under load requests carry many writes each (every request costs
// the server a decode, an engine call and an answer).
const eagerRequests = 2

// sendable reports whether the sender has a request to send now: the
// first group, if the window has room and the group is full, few
// requests are in flight, or the Writer is closing. Called with mu held.
func (w *Writer) sendable() bool {
	if w.closing && len(w.queued) == 0 {
		return true // to close the stream
	}
	if len(w.queued) == 0 || len(w.inflight) >= w.opts.Window {
		return false
	}
	g := w.groups[0]
	full := len(w.groups) > 1 || g.n >= w.opts.MaxBatch
	return full || w.closing || w.flushing > 0 || len(w.inflight) < eagerRequests
}

// send sends what waits, in order, while the window has room.
func (w *Writer) send() {
	for {
		w.mu.Lock()
		for w.ended == nil && !w.sendable() {
			w.cond.Wait()
		}
		if w.ended != nil {
			w.mu.Unlock()
			return
		}
		if len(w.queued) == 0 { // closing, and everything is sent
			w.mu.Unlock()
			_ = w.stream.CloseSend()
			return
		}
		n := w.groups[0].n
		w.groups = w.groups[1:]
		req := &pb.WriteVariablesRequest{Updates: w.queued[:n:n], SmallAcks: !w.opts.FullAcks}
		if !w.sentAny {
			req.SessionId, w.sentAny = w.session, true
		}
		w.inflight = append(w.inflight, w.handles[:n:n])
		w.queued, w.handles = w.queued[n:], w.handles[n:]
		w.cond.Broadcast()
		w.mu.Unlock()
		if err := w.stream.Send(req); err != nil {
			return // the receiver learns why from Recv
		}
	}
}

// receive resolves the answers, in order, until the stream ends; then
// fails every write left.
func (w *Writer) receive() {
	defer close(w.stopped)
	for {
		resp, err := w.stream.Recv()
		if err != nil {
			w.end(err)
			return
		}
		w.mu.Lock()
		if len(w.inflight) == 0 {
			w.mu.Unlock()
			w.end(status.Error(codes.Internal, "the server answered a request that was not sent"))
			return
		}
		handles := w.inflight[0]
		w.inflight = w.inflight[1:]
		w.cond.Broadcast()
		w.mu.Unlock()
		resolve(handles, resp)
		if len(handles) > 0 {
			close(handles[0].group.done)
		}
	}
}

// resolve gives each write of a request its result from resp: small acks
// (packed lists, results holding only the failures, by index) or a result
// per write.
func resolve(handles []*Pending, resp *pb.WriteVariablesResponse) {
	results := resp.GetResults()
	if ids, vers, revs := resp.GetVariableIds(), resp.GetVersions(), resp.GetRevisions(); len(revs) == len(handles) && len(ids) == len(revs) && len(vers) == len(revs) {
		for i, p := range handles {
			p.ack = Ack{VariableID: ids[i], Version: vers[i], Revision: revs[i], Position: resp.GetLogPosition()}
		}
		for _, r := range results {
			if i := int(r.GetIndex()); i >= 0 && i < len(handles) {
				handles[i].ack, handles[i].err = Ack{}, writeError(r)
			}
		}
		return
	}
	for i, p := range handles {
		if i >= len(results) {
			p.err = &WriteError{Code: codes.Internal, Message: "the server gave no result for this write"}
			continue
		}
		r := results[i]
		if !r.GetSuccess() {
			p.err = writeError(r)
			continue
		}
		p.ack = Ack{VariableID: r.GetVariableId(), Version: r.GetVersion(), Revision: r.GetRevision(), Variable: r.GetVariable(),
			Position: resp.GetLogPosition()}
	}
}

func writeError(r *pb.SetVariableResult) *WriteError {
	return &WriteError{Variable: r.GetVariableIdentifier(), Code: codes.Code(r.GetErrorCode()),
		Reason: r.GetErrorReason(), Metadata: r.GetErrorMetadata(), Message: r.GetError()}
}

// end records the stream's end and fails every write not answered.
func (w *Writer) end(err error) {
	w.mu.Lock()
	if errors.Is(err, io.EOF) && w.closing && len(w.inflight) == 0 && len(w.queued) == 0 {
		err = errClean
	}
	w.ended = err
	groups := w.inflight
	for _, g := range w.groups { // never sent
		groups = append(groups, w.handles[:g.n])
		w.handles = w.handles[g.n:]
	}
	w.queued, w.groups, w.handles, w.inflight = nil, nil, nil, nil
	w.cond.Broadcast()
	w.mu.Unlock()
	for _, hs := range groups {
		for _, p := range hs {
			p.err = &StreamError{Err: err}
		}
		if len(hs) > 0 {
			close(hs[0].group.done)
		}
	}
}

// typeOf is the variable type of v's kind.
func typeOf(v *pb.Value) pb.VariableType {
	switch v.GetKind().(type) {
	case *pb.Value_FloatValue:
		return pb.VariableType_VARIABLE_TYPE_FLOAT
	case *pb.Value_IntegerValue:
		return pb.VariableType_VARIABLE_TYPE_INTEGER
	case *pb.Value_StringValue:
		return pb.VariableType_VARIABLE_TYPE_STRING
	case *pb.Value_BooleanValue:
		return pb.VariableType_VARIABLE_TYPE_BOOLEAN
	case *pb.Value_ChoiceValue:
		return pb.VariableType_VARIABLE_TYPE_CHOICE
	case *pb.Value_ModuleValue:
		return pb.VariableType_VARIABLE_TYPE_MODULE
	case *pb.Value_EmbeddingValue:
		return pb.VariableType_VARIABLE_TYPE_EMBEDDING
	case *pb.Value_TensorValue:
		return pb.VariableType_VARIABLE_TYPE_TENSOR
	}
	return pb.VariableType_VARIABLE_TYPE_UNSPECIFIED
}
