package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/varwatch/varwatch/engine"
)

// Resuming a watch from before the node's history, by replaying the stream.
//
// A node's watch history is bounded (engine.Config.History*), but the
// stream reaches back to the oldest snapshot kept: every change since
// then can be computed again. Replay does that for one watch, off the
// live engine's loop:
//
//  1. It registers the watch on the live engine first, with no resume: a
//     subscription at the session's current revision L, which buffers
//     every change after L from now on.
//  2. It starts a scratch engine from the newest snapshot that is older
//     than the resume revision R (or holds no such incarnation of the
//     session yet), and applies the stream to it from the position after
//     that snapshot, until its session reaches revision L. A watch on the
//     scratch engine, opened as soon as its session exists, yields the
//     changes; those in (R, L] are the ones the client missed.
//  3. Once the scratch watch is drained up to L, the live subscription
//     takes over: it holds everything after L. No gap, no duplicate:
//     every node computes the same revisions from the same stream.
//
// The live subscription buffers while the replay runs: a replay slower
// than the writes cuts it off as a slow consumer (RESOURCE_EXHAUSTED
// naming the last revision delivered), as any slow watch is, and the
// client resumes from there.
//
// The work is the scratch engine's (its own loop and memory, at most one
// snapshot decoded, the stream read by its own ordered consumer), never
// the live loop's; it is cancelled with the watch's context or Close, and
// bounded: at most maxReplays at once per node (a resume past that waits
// for a slot, or for its context), and a replay runs at most
// replayBacklog events ahead of its consumer.

// maxReplays bounds the replays a node runs at once: each holds a scratch
// engine with a whole snapshot's state. A package variable so that tests
// can shrink it.
var maxReplays = 4

// replayBacklog bounds how many events a replay's scratch watch holds
// before the replay waits for its consumer to drain them (the scratch
// engine applies far faster than a client reads). A package variable so
// that tests can shrink it.
var replayBacklog = 1024

// ErrNotReplayable: the stream no longer reaches back to the resume
// revision (or never held it). It wraps engine.ErrCompacted: the client is
// told REVISION_COMPACTED, as when there is no stream to replay.
var ErrNotReplayable = fmt.Errorf("%w: the stream no longer reaches back that far", engine.ErrCompacted)

// Replay is a watch resumed from a revision older than the live engine's
// history: the changes after it replayed from the stream, then the live
// engine's. Its methods are those of an *engine.Subscription.
//
// # Notes
//
// Drain, Next, Pending and Heartbeat are for a single consumer goroutine,
// which owns the phase (replaying, then live). Close, Done and Ready may
// be called from anywhere.
type Replay struct {
	session string
	from    int64 // R: the client has every change up to it
	until   int64 // L: the live subscription's snapshot revision
	live    *engine.Subscription

	scratch *engine.Engine       // closed by the feeder, after the hand-over or Close
	sub     *engine.Subscription // the scratch engine's watch
	ready   chan struct{}        // capacity 1: signalled by either watch, and by the feeder's end
	onReady func()               // engine.WatchRequest.OnReady; immutable
	drained chan struct{}        // capacity 1: the consumer drained sub

	cancel context.CancelFunc // ends the feeder: hand-over, Close, or the watch's context
	// stream stops the stream's consumer and deletes it; nil once done.
	// Set by Node.Replay, then owned by the feeder.
	stream func()
	wg     sync.WaitGroup // the feeder
	once   sync.Once      // Close
	slot   func()         // releases the node's replay slot

	mu     sync.Mutex
	fed    bool  // the feeder has applied what it had to; guarded by mu
	fedErr error // why the feeder stopped early; guarded by mu

	// Owned by the consumer.
	handed  bool           // the live subscription has taken over
	lastRev int64          // revision of the last event handed out
	buf     []engine.Event // Next's unread events
}

// Replay serves req, a resume (req.Resume) from a revision older than the
// live engine's history, from the stream. It fails with ErrNotReplayable
// when the stream does not reach back to req.StartRevision, and with the
// live engine's error when the watch itself is refused (an unknown
// session, another incarnation).
func (n *Node) Replay(ctx context.Context, req engine.WatchRequest) (*Replay, error) {
	if !req.Resume || req.IncludeInitialValues {
		return nil, fmt.Errorf("%w: only a resume is replayed", engine.ErrInvalidArgument)
	}
	select {
	case n.replays <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	slot := func() { <-n.replays }
	r := &Replay{session: req.Session, from: req.StartRevision, ready: make(chan struct{}, 1), onReady: req.OnReady,
		drained: make(chan struct{}, 1), slot: slot}
	live, err := n.Engine.Watch(ctx, engine.WatchRequest{Session: req.Session, Variables: req.Variables, Pattern: req.Pattern,
		Coalesce: req.Coalesce, Buffer: req.Buffer, Incarnation: req.Incarnation, OnReady: r.notify})
	if err != nil {
		slot()
		return nil, err
	}
	r.live, r.until = live, live.SnapshotRevision()
	fctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	it, next, err := n.startScratch(fctx, r, req, live.Incarnation())
	if err != nil {
		cancel()
		r.release()
		live.Close()
		return nil, err
	}
	r.wg.Add(1)
	go r.feed(fctx, n, it, next)
	return r, nil
}

// notify signals the consumer; the watches' OnReady and the feeder call
// it.
func (r *Replay) notify() {
	select {
	case r.ready <- struct{}{}:
	default:
	}
	if r.onReady != nil {
		r.onReady()
	}
}

// startScratch starts r's scratch engine from a snapshot old enough for
// req, opens the stream after it, and applies it until the scratch watch
// can open (the session, with the watched variables, may be created after
// the snapshot). It returns the stream's iterator and the position it
// delivers next.
func (n *Node) startScratch(ctx context.Context, r *Replay, req engine.WatchRequest, incarnation string) (jetstream.MessagesContext, uint64, error) {
	ecfg := n.ecfg
	ecfg.Log = discardLog{}
	ecfg.Logf = nil
	scratch, at, err := n.Log.scratchEngine(ctx, ecfg, req.Session, incarnation, req.StartRevision)
	if err != nil {
		return nil, 0, err
	}
	r.scratch = scratch
	it, release, err := n.Log.replayMessages(ctx, at)
	if err != nil {
		return nil, 0, err
	}
	r.stream = release
	next := at + 1
	for {
		sub, err := openScratchWatch(ctx, scratch, req, incarnation, r.notify)
		if err != nil {
			return nil, 0, err
		}
		if sub != nil {
			r.sub = sub
			return it, next, nil
		}
		if next > n.Engine.Applied() {
			// The live engine holds the session at revision L: the
			// scratch one got there and still has no such watch.
			return nil, 0, fmt.Errorf("%w: the session or its variables are not in the stream", ErrNotReplayable)
		}
		if err := applyNext(ctx, it, scratch, next); err != nil {
			return nil, 0, err
		}
		next++
	}
}

// openScratchWatch opens req's watch on the scratch engine, from its
// session's current revision if that is at or before req.StartRevision
// (nothing to replay from its history), else from req.StartRevision (the
// changes since are in its history: it applied them itself). It returns
// nil while the session or a watched variable does not exist yet.
func openScratchWatch(ctx context.Context, scratch *engine.Engine, req engine.WatchRequest, incarnation string, onReady func()) (*engine.Subscription, error) {
	info, err := scratch.GetSession(ctx, req.Session)
	if errors.Is(err, engine.ErrSessionNotFound) || err == nil && info.Incarnation != incarnation {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Unbuffered by count or bytes: the feeder bounds it (replayBacklog).
	sub, err := scratch.Watch(ctx, engine.WatchRequest{Session: req.Session, Variables: req.Variables, Pattern: req.Pattern,
		Resume: true, StartRevision: min(info.Revision, req.StartRevision), Incarnation: incarnation, Buffer: 1 << 30, OnReady: onReady})
	switch {
	case errors.Is(err, engine.ErrVariableNotFound):
		return nil, nil
	case errors.Is(err, engine.ErrCompacted):
		return nil, fmt.Errorf("%w: %w", ErrNotReplayable, err)
	}
	return sub, err
}

// applyNext hands the scratch engine the stream's message at seq.
func applyNext(ctx context.Context, it jetstream.MessagesContext, scratch *engine.Engine, seq uint64) error {
	msg, err := it.Next()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: replaying the stream: %w", engine.ErrLogUnavailable, err)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("%w: a stream message without metadata: %w", engine.ErrLogUnavailable, err)
	}
	if got := meta.Sequence.Stream; got != seq {
		// Positions have no holes but where the stream was trimmed.
		return fmt.Errorf("%w: the stream resumes at %d, not %d", ErrNotReplayable, got, seq)
	}
	return scratch.ApplyLogged(seq, msg.Data())
}

// feed applies the stream to the scratch engine from next on, until its
// session reaches the live subscription's snapshot revision, never more
// than replayBacklog events ahead of the consumer.
//
// The feeder owns the scratch engine's end: once fed, it frees the
// stream's consumer at once (while the client still reads the replayed
// changes), and once the hand-over or Close cancels ctx, it closes the
// scratch engine, so that neither waits on the watch's sending path.
func (r *Replay) feed(ctx context.Context, n *Node, it jetstream.MessagesContext, next uint64) {
	defer r.wg.Done()
	err := r.feedTo(ctx, n, it, next)
	r.mu.Lock()
	r.fed, r.fedErr = true, err
	r.mu.Unlock()
	r.notify()
	r.releaseStream()
	<-ctx.Done()
	r.release()
}

func (r *Replay) feedTo(ctx context.Context, n *Node, it jetstream.MessagesContext, next uint64) error {
	// target is a position at or after the one whose apply made revision
	// L on the live engine; read after the live watch was registered, it
	// is one, unless that apply had not published its position yet: then
	// the check below finds the session short of L, and one more entry at
	// a time is applied.
	target := n.Engine.Applied()
	for {
		for ; next <= target; next++ {
			if next%64 == 0 {
				if err := r.waitBacklog(ctx, next-1); err != nil {
					return err
				}
			}
			if err := applyNext(ctx, it, r.scratch, next); err != nil {
				return err
			}
		}
		// The session at L is at or before target; one gone (closed
		// after L) or another incarnation means the stream passed L.
		info, err := r.scratch.GetSession(ctx, r.session)
		switch {
		case errors.Is(err, engine.ErrSessionNotFound):
			return nil
		case err != nil:
			return err
		case info.Incarnation != r.live.Incarnation() || info.Revision >= r.until:
			return nil
		}
		target = max(next, n.Engine.Applied())
	}
}

// waitBacklog waits until the scratch engine has applied seq and its
// watch holds at most replayBacklog events.
func (r *Replay) waitBacklog(ctx context.Context, seq uint64) error {
	if err := r.scratch.WaitApplied(ctx, seq); err != nil {
		return err
	}
	for r.sub.Pending() > replayBacklog {
		select {
		case <-r.drained:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// SnapshotRevision is the live subscription's: the session's revision
// when the watch was registered.
func (r *Replay) SnapshotRevision() int64 { return r.until }

// Incarnation is the watched session's incarnation.
func (r *Replay) Incarnation() string { return r.live.Incarnation() }

// Ready is signalled when events may be waiting or the watch ended.
func (r *Replay) Ready() <-chan struct{} { return r.ready }

// Done is closed when the live subscription has ended.
func (r *Replay) Done() <-chan struct{} { return r.live.Done() }

// Drain takes every waiting event, in order, as
// engine.Subscription.Drain does: the replayed changes after the resume
// revision up to the live subscription's snapshot, then the live ones.
func (r *Replay) Drain(spare []engine.Event) ([]engine.Event, error) {
	if r.handed {
		return r.drainLive(spare)
	}
	r.mu.Lock()
	fed, fedErr := r.fed, r.fedErr
	r.mu.Unlock()
	evs, err := r.sub.Drain(spare)
	select {
	case r.drained <- struct{}{}:
	default:
	}
	if err != nil && !errors.Is(err, engine.ErrSessionClosed) {
		return nil, err // the scratch engine closed: Close was called
	}
	// Keep (R, L]: the scratch watch starts at or before R, and may run
	// past L. Its session's end is the live subscription's to tell.
	evs = slices.DeleteFunc(evs, func(ev engine.Event) bool {
		return ev.Revision <= r.from || ev.Revision > r.until || ev.Type == engine.EventSessionClosed
	})
	if len(evs) > 0 {
		r.lastRev = evs[len(evs)-1].Revision
		return evs, nil
	}
	switch {
	case fed && fedErr != nil:
		return nil, fedErr
	case fed || err != nil:
		// Everything up to L was applied before fed was read, and
		// drained since: hand over.
		r.handOver()
		return r.drainLive(evs)
	}
	return evs, nil
}

// drainLive drains the live subscription.
func (r *Replay) drainLive(spare []engine.Event) ([]engine.Event, error) {
	evs, err := r.live.Drain(spare)
	if len(evs) > 0 {
		r.lastRev = evs[len(evs)-1].Revision
	}
	return evs, err
}

// handOver ends the replay: the live subscription serves from here on,
// and the feeder closes the scratch engine.
func (r *Replay) handOver() {
	r.handed = true
	r.lastRev = max(r.lastRev, r.until)
	r.cancel()
}

// releaseStream stops and deletes the replay's consumer of the stream, if
// it has one.
func (r *Replay) releaseStream() {
	if r.stream != nil {
		r.stream()
		r.stream = nil
	}
}

// release frees what the replay holds besides the live subscription: the
// stream's consumer, the scratch engine and the node's replay slot. Called
// once: by the feeder, or by Node.Replay when none started.
func (r *Replay) release() {
	r.releaseStream()
	if r.scratch != nil {
		r.scratch.Close()
	}
	r.slot()
}

// Pending returns how many events wait (before the hand-over, some of them
// may be dropped as older than the resume revision).
func (r *Replay) Pending() int {
	if r.handed {
		return r.live.Pending()
	}
	return r.sub.Pending()
}

// Heartbeat returns a heartbeat at the revision up to which every change
// has been drained.
func (r *Replay) Heartbeat(now time.Time) engine.Event {
	rev := max(r.from, r.lastRev)
	if r.handed {
		rev = max(rev, r.live.HeartbeatRevision())
	}
	return engine.Event{Type: engine.EventHeartbeat, Revision: rev, Time: now, Incarnation: r.live.Incarnation()}
}

// Next returns the next event, waiting for one if needed, as
// engine.Subscription.Next does.
func (r *Replay) Next(ctx context.Context) (engine.Event, error) {
	for len(r.buf) == 0 {
		evs, err := r.Drain(nil)
		if err != nil {
			return engine.Event{}, err
		}
		if len(evs) > 0 {
			r.buf = evs
			break
		}
		select {
		case <-r.ready:
		case <-ctx.Done():
			return engine.Event{}, ctx.Err()
		}
	}
	ev := r.buf[0]
	r.buf = r.buf[1:]
	return ev, nil
}

// Close ends the watch: the replay, if it still runs, and the live
// subscription. It is idempotent.
func (r *Replay) Close() {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
		r.live.Close()
	})
}

// discardLog is the scratch engine's log: it applies what the stream
// holds and proposes nothing (a refresh or expiry its clock would propose
// is the live nodes' to make).
type discardLog struct{}

func (discardLog) Propose(_ string, _ []byte, done func(uint64, error)) {
	done(0, errors.New("cluster: a replay proposes nothing"))
}

// scratchEngine starts an engine from the newest snapshot at which the
// session is at or before revision rev of incarnation, or does not exist
// in that incarnation yet (it is created later in the stream), and
// returns it with the snapshot's position; from an empty engine at 0 when
// the stream was never trimmed. The stream must still hold the position
// after the snapshot.
//
// Whether a snapshot will do is monotonic in its position (the live
// engine holds the incarnation now, so a snapshot with another one is
// older), so it searches the snapshots by halves: a read of the object
// store and a decode each, about log2(SnapshotsKept) of them, rather than
// one per snapshot newer than rev, which a watcher far behind would cost.
func (l *Log) scratchEngine(ctx context.Context, ecfg engine.Config, session, incarnation string, rev int64) (*engine.Engine, uint64, error) {
	first, err := l.firstSequence(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", engine.ErrLogUnavailable, err)
	}
	try, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout)
	pos, err := l.listSnapshots(try)
	cancel()
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", engine.ErrLogUnavailable, err)
	}
	pos = slices.DeleteFunc(pos, func(p uint64) bool { return p+1 < first }) // the stream after them is gone
	var best *engine.Engine
	var at uint64
	lo, hi := 0, len(pos) // the answer is in pos[lo-1:hi]; pos[hi:] will not do
	for lo < hi {
		mid := (lo + hi) / 2
		e, ok, err := l.scratchAt(ctx, ecfg, pos[mid], session, incarnation, rev)
		if err != nil {
			if best != nil {
				best.Close()
			}
			return nil, 0, err
		}
		if !ok {
			hi = mid
			continue
		}
		if best != nil {
			best.Close()
		}
		best, at, lo = e, pos[mid], mid+1
	}
	switch {
	case best != nil:
		return best, at, nil
	case first > 1:
		return nil, 0, fmt.Errorf("%w (it starts at position %d, after the snapshots at or before revision %d)", ErrNotReplayable, first, rev)
	}
	return engine.New(ecfg), 0, nil
}

// scratchAt starts an engine from the snapshot at p and reports whether
// it will do for scratchEngine; it returns no engine when it will not. A
// snapshot gone since the listing (trimmed), or that does not load, will
// not: an older one may.
func (l *Log) scratchAt(ctx context.Context, ecfg engine.Config, p uint64, session, incarnation string, rev int64) (*engine.Engine, bool, error) {
	data, err := l.readSnapshot(ctx, p)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nil, false, nil
	case err != nil && ctx.Err() != nil:
		return nil, false, ctx.Err()
	case err != nil:
		// Not "compacted": the snapshot is there, JetStream did not
		// answer.
		return nil, false, fmt.Errorf("%w: replay: read snapshot %d: %w", engine.ErrLogUnavailable, p, err)
	}
	e, _, err := engine.NewFromLogged(ecfg, bytes.NewReader(data))
	if err != nil {
		l.log.Warn("replay: a snapshot does not load; trying an older one", "position", p, "error", err)
		return nil, false, nil
	}
	info, err := e.GetSession(ctx, session)
	switch {
	case errors.Is(err, engine.ErrSessionNotFound):
		return e, true, nil
	case err != nil:
		e.Close()
		return nil, false, err
	case info.Incarnation == incarnation && info.Revision > rev:
		e.Close() // newer than the resume
		return nil, false, nil
	}
	return e, true, nil
}

// replayMessages opens an ordered consumer of the stream from the position
// after at, for a replay. Its iterator stops when ctx ends; release stops
// it and deletes the consumer on the server at once (an ordered consumer
// would otherwise stay there for minutes, one per replay).
func (l *Log) replayMessages(ctx context.Context, at uint64) (it jetstream.MessagesContext, release func(), err error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: at + 1,
		InactiveThreshold: time.Minute}
	try, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout)
	defer cancel()
	cons, err := l.stream.OrderedConsumer(try, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: replay: ordered consumer: %w", engine.ErrLogUnavailable, err)
	}
	it, err = cons.Messages()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: replay: ordered consumer: %w", engine.ErrLogUnavailable, err)
	}
	// Next blocks until a message comes: the watch's end stops it.
	context.AfterFunc(ctx, it.Stop)
	release = func() {
		it.Stop()
		info := cons.CachedInfo()
		if info == nil {
			return
		}
		dctx, cancel := context.WithTimeout(context.Background(), l.cfg.PublishTimeout)
		defer cancel()
		if err := l.stream.DeleteConsumer(dctx, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			l.log.Debug("replay: deleting its consumer failed; the server drops it when inactive", "error", err)
		}
	}
	return it, release, nil
}
