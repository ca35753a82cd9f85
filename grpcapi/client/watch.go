package client

import (
	"context"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// WatchOptions tune a Watch. The zero value is a sensible default.
type WatchOptions struct {
	// Dedicated gives the watch a stream of its own (WatchVariables)
	// instead of a place on the stream all the client's watches share
	// (the multiplexed Watch RPC), for servers that predate it.
	Dedicated bool
	// Batched gives the watch a WatchVariablesBatched stream of its own
	// (for very high update rates on one watch); Next still returns one
	// update at a time. It implies Dedicated.
	Batched bool
	// View is how much of each variable the updates carry (VIEW_FULL when
	// unset; VIEW_VALUE leaves out constraints, metadata and creation
	// fields). Multiplexed watches only: a dedicated stream is always full.
	View pb.View
	// Heartbeats makes Next return heartbeat updates too.
	Heartbeats bool
	// Resnapshot: when the server's history no longer reaches back to the
	// revision to resume from (OUT_OF_RANGE), or the session was created
	// again since (a new incarnation, see IncarnationChangedError), watch
	// again with initial values instead of failing. The caller then sees a
	// fresh snapshot (initial values and initial_values_complete) and must
	// treat it as replacing what it knew.
	Resnapshot bool
	// MaxAttempts bounds consecutive failed reconnections; zero retries
	// until the context ends.
	MaxAttempts int
	// MaxBackoff caps the wait between reconnections (default 2s). Waits
	// start at 25ms and double, with jitter.
	MaxBackoff time.Duration
	// Position, on a node of a cluster, makes the node wait until it has
	// applied the log up to it (a WritePosition) before it registers the
	// watch, on every (re)connection; Local makes it register the watch
	// without asking the log where it ends first (see LocalRead: a
	// snapshot that may be stale, and a watch that opens and resumes
	// while the log is unreachable). Either gives the watch a dedicated
	// stream, as Dedicated does: they are metadata of a stream, and the
	// shared one is every watch's. A single server ignores them.
	Position uint64
	Local    bool
}

// Watch is a watch stream that resumes by itself. It is for one goroutine:
// call Next in a loop, and Close when done.
//
// # Notes
//
// Resuming is exact: the watch remembers the last revision it knows it has
// received completely, plus which variables it already delivered at a
// revision received only in part (a disconnect can split an atomic
// multi-set), resumes from just before that revision and skips what it
// already delivered. Initial values are held back until
// initial_values_complete, so a disconnect during the snapshot restarts it
// unseen.
//
// Revisions count within one incarnation of a session. The watch learns
// the incarnation from the first update that tells its position (a
// heartbeat or initial_values_complete) and names it on every resume, so a
// session deleted and created again while the watch was away ends it with
// an *IncarnationChangedError instead of handing over another history's
// changes under the same revision numbers.
type Watch struct {
	ctx    context.Context
	cancel context.CancelFunc
	bridge pb.UnifiedBridgeClient
	mux    *mux
	req    *pb.WatchVariablesRequest
	opts   WatchOptions

	recv  func() ([]*pb.VariableUpdate, error) // nil: not connected
	queue []*pb.VariableUpdate
	marks []int64 // per queued update: what Revision says once it is returned
	// head is the next update Next returns: queue[head:] wait. Both slices
	// start over at 0 once drained, keeping their arrays (reslicing from
	// the front made every batch reallocate them).
	head    int
	initial []*pb.VariableUpdate // held back until the snapshot completes
	err     error                // once set, Next returns it
	// await waits until the server answered the current connection's
	// watch and reports whether it registered it (established.go); nil
	// when not connected.
	await       func(ctx context.Context) (bool, error)
	established bool // the server registered the watch once (Established)

	delivered   int64           // every change up to it was returned by Next (Revision)
	started     bool            // the server confirmed a position (snapshot or heartbeat)
	incarnation string          // the session's incarnation the position belongs to, once known
	complete    int64           // every change up to it was delivered
	partRev     int64           // a revision after complete delivered in part, or 0
	partSeen    map[string]bool // variables delivered at partRev
	skipRev     int64           // after a resume: the revision replayed in part
	skipping    map[string]bool // variables of skipRev to skip once (a copy of partSeen)
	resumes     int
	failures    int

	relMu   sync.Mutex // guards release: Close may come from another goroutine
	release func()     // leaves the shared stream; nil on a dedicated one
}

// Watch starts a resuming watch for req. Its stream opens on the first
// Next or Established. When req asks for no initial values, the watch's
// starting point is the revision of the server's first message (a
// heartbeat at once): call Established to wait for it, so that a change
// made after that is certain to come out of Next.
func (c *Client) Watch(ctx context.Context, req *pb.WatchVariablesRequest, opts WatchOptions) *Watch {
	if opts.Position > 0 || opts.Local {
		opts.Dedicated = true
		ctx = withReads(ctx, opts.Position, opts.Local)
	}
	ctx, cancel := context.WithCancel(ctx)
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 2 * time.Second
	}
	w := &Watch{ctx: ctx, cancel: cancel, bridge: c.UnifiedBridgeClient, mux: c.mux,
		req: proto.Clone(req).(*pb.WatchVariablesRequest), opts: opts}
	if req.StartRevision != nil { // a resume already: the position is known
		w.started, w.complete, w.delivered = true, req.GetStartRevision(), req.GetStartRevision()
	}
	w.incarnation = req.GetIncarnation()
	return w
}

// Close ends the watch and its stream (or its place on the shared one).
// Next then returns context.Canceled.
func (w *Watch) Close() {
	w.cancel()
	w.leave()
}

// drop forgets the current connection of the watch, releasing its place
// on a shared stream.
func (w *Watch) drop() {
	w.recv, w.await = nil, nil
	w.leave()
}

// leave releases the watch's place on a shared stream, if it has one.
func (w *Watch) leave() {
	w.relMu.Lock()
	release := w.release
	w.release = nil
	w.relMu.Unlock()
	if release != nil {
		release()
	}
}

// Revision is the revision up to which every change has been delivered:
// returned by Next (not merely received, which may be further on).
func (w *Watch) Revision() int64 { return w.delivered }

// Incarnation is the incarnation of the watched session that Revision
// belongs to ("" until the server told it).
func (w *Watch) Incarnation() string { return w.incarnation }

// Resumes counts how many times the watch reconnected.
func (w *Watch) Resumes() int { return w.resumes }

// Next returns the next update. After session_closed it returns io.EOF;
// errors it does not resume from (NOT_FOUND, INVALID_ARGUMENT, OUT_OF_RANGE
// without Resnapshot, RESOURCE_EXHAUSTED for a limit, ...) are returned as
// gRPC status errors. See resumable for what it resumes from.
func (w *Watch) Next() (*pb.VariableUpdate, error) {
	for w.head == len(w.queue) {
		if w.err != nil {
			return nil, w.err
		}
		if w.recv == nil {
			w.connect()
			continue
		}
		w.pull()
	}
	up := w.queue[w.head]
	w.delivered = w.marks[w.head]
	w.queue[w.head] = nil
	if w.head++; w.head == len(w.queue) {
		w.queue, w.marks, w.head = w.queue[:0], w.marks[:0], 0
	}
	return up, nil
}

// pull receives once from the connected stream: the updates go to the
// queue, an error drops the connection and resumes or ends the watch.
func (w *Watch) pull() {
	ups, err := w.recv()
	if err != nil {
		w.drop()
		w.resumeAt(err)
		w.settle()
		w.retryOrFail(err)
		return
	}
	w.failures = 0
	if len(ups) > 0 {
		w.established = true // the server sends nothing before it registered the watch
	}
	for _, up := range ups {
		if w.err != nil { // nothing after the end counts
			break
		}
		w.accept(up)
		w.settle()
	}
}

// enqueue queues up for Next, marked with complete as it stands: once up
// is returned, every change up to it was.
func (w *Watch) enqueue(up ...*pb.VariableUpdate) {
	for _, u := range up {
		w.queue = append(w.queue, u)
		w.marks = append(w.marks, w.complete)
	}
}

// settle makes what accepting an update completed count from the right
// update on: at once if nothing waits for Next, else once the last
// queued update is returned (it comes after everything accepted so far).
func (w *Watch) settle() {
	if n := len(w.marks); n > w.head {
		w.marks[n-1] = max(w.marks[n-1], w.complete)
	} else {
		w.delivered = max(w.delivered, w.complete)
	}
}

// connect opens a stream: the original request the first time, a resume
// from the last complete revision after that.
func (w *Watch) connect() {
	req := proto.Clone(w.req).(*pb.WatchVariablesRequest)
	if w.started {
		req.IncludeInitialValues = false
		start := w.complete
		w.skipRev, w.skipping = 0, nil
		if w.partRev > 0 {
			// partSeen stays whole: if this stream drops too, the next
			// resume must skip the same variables again.
			start = w.partRev - 1
			w.skipRev, w.skipping = w.partRev, maps.Clone(w.partSeen)
		}
		req.StartRevision = proto.Int64(start)
	}
	req.Incarnation = w.incarnation
	w.initial = nil
	if !w.opts.Dedicated && !w.opts.Batched && w.mux != nil {
		sub := w.mux.open(req, w.opts.View)
		w.relMu.Lock()
		w.release = sub.close
		w.relMu.Unlock()
		if w.ctx.Err() != nil { // closed meanwhile: Close found no release
			sub.close()
		}
		w.recv = func() ([]*pb.VariableUpdate, error) { return sub.next(w.ctx) }
		w.await = sub.awaitCreated
		return
	}
	if w.opts.Batched {
		stream, err := w.bridge.WatchVariablesBatched(w.ctx, req)
		if err != nil {
			w.retryOrFail(err)
			return
		}
		w.recv = func() ([]*pb.VariableUpdate, error) {
			b, err := stream.Recv()
			return b.GetUpdates(), err
		}
		w.await = awaitHeader(stream)
		return
	}
	stream, err := w.bridge.WatchVariables(w.ctx, req)
	if err != nil {
		w.retryOrFail(err)
		return
	}
	w.recv = func() ([]*pb.VariableUpdate, error) {
		up, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return []*pb.VariableUpdate{up}, nil
	}
	w.await = awaitHeader(stream)
}

// accept takes one update from the stream and decides what Next returns.
func (w *Watch) accept(up *pb.VariableUpdate) {
	rev := up.GetRevision()
	switch up.GetUpdateType() {
	case "initial_value":
		w.initial = append(w.initial, up)
		return
	case "initial_values_complete":
		if !w.learn(up) {
			return
		}
		w.enqueue(w.initial...) // marked before the snapshot: incomplete until its end
		w.initial = nil
		w.markComplete(rev)
		w.enqueue(up)
		w.started = true
		return
	case "heartbeat":
		if !w.learn(up) {
			return
		}
		if w.started || !w.req.GetIncludeInitialValues() {
			w.markComplete(rev)
			w.started = true
		}
		if w.opts.Heartbeats {
			w.enqueue(up)
		}
		return
	case "session_closed":
		w.enqueue(up)
		w.err = io.EOF
		return
	}
	// A change (value_change, variable_registered, variable_deleted).
	id := up.GetVariableId()
	if rev == w.skipRev && w.skipping[id] {
		delete(w.skipping, id) // delivered before the reconnect
		return
	}
	if rev > w.partRev {
		w.markComplete(w.partRev) // a later revision: the previous one is whole
		w.partRev = rev
		if w.partSeen == nil {
			w.partSeen = map[string]bool{}
		}
		clear(w.partSeen) // reused: a map per revision was most of Next's garbage
	}
	w.partSeen[id] = true
	w.enqueue(up)
}

// learn records the incarnation an update names. It reports false, ending
// the watch, if it is another than the one the watch's position belongs
// to: the server would have refused the resume, so this is a server that
// does not check, and nothing more can be trusted.
func (w *Watch) learn(up *pb.VariableUpdate) bool {
	inc := up.GetIncarnation()
	switch {
	case inc == "" || inc == w.incarnation:
	case w.incarnation == "":
		w.incarnation = inc
	default:
		w.err = &IncarnationChangedError{Session: w.req.GetSessionId(), Watched: w.incarnation, Current: inc,
			status: status.New(codes.FailedPrecondition, "session incarnation changed")}
		return false
	}
	return true
}

// markComplete records that every change up to rev was delivered.
func (w *Watch) markComplete(rev int64) {
	if rev > w.complete {
		w.complete = rev
	}
	if w.partRev <= w.complete {
		w.partRev = 0
		clear(w.partSeen)
	}
}

// retryOrFail decides, after a stream error, whether to reconnect (after a
// backoff) or end the watch.
func (w *Watch) retryOrFail(err error) {
	if w.ctx.Err() != nil {
		w.err = w.ctx.Err()
		return
	}
	switch {
	case resumable(err):
		if errors.Is(err, io.EOF) { // the server ended the stream without session_closed
			err = status.Error(codes.Unavailable, "stream ended")
		}
	case status.Code(err) == codes.OutOfRange || status.Code(err) == codes.FailedPrecondition:
		changed := asIncarnationChanged(err)
		if changed != nil {
			err = changed
		}
		if (status.Code(err) == codes.FailedPrecondition && changed == nil) || !w.opts.Resnapshot {
			w.err = err
			return
		}
		w.started, w.complete, w.delivered, w.partRev, w.partSeen = false, 0, 0, 0, nil
		w.incarnation = ""
		w.req.IncludeInitialValues = true
		w.req.StartRevision = nil
		w.req.Incarnation = ""
	default:
		w.err = err
		return
	}
	w.failures++
	if w.opts.MaxAttempts > 0 && w.failures > w.opts.MaxAttempts {
		w.err = err
		return
	}
	w.resumes++
	backoff := min(w.opts.MaxBackoff, 25*time.Millisecond<<min(w.failures-1, 16))
	backoff = backoff*4/5 + rand.N(backoff*2/5+1) // ±20% jitter
	select {
	case <-time.After(backoff):
	case <-w.ctx.Done():
		w.err = w.ctx.Err()
	}
}
