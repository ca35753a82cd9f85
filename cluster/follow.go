package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/varwatch/varwatch/engine"
)

// follower is the goroutine that feeds the stream to the engine.
type follower struct {
	mu sync.Mutex
	it jetstream.MessagesContext // the iterator being read; guarded by mu
	// ready is closed once the engine has applied the stream as far as
	// it reached when Follow started.
	ready chan struct{}
	// lag, while set, holds the follower back before each message:
	// tests make a node lag with it.
	lag atomic.Bool
	// handed counts the entries handed to the engine (tests check that a
	// node started from a snapshot replays only the tail).
	handed atomic.Uint64
	// from is the position the engine had applied when Follow started
	// (a snapshot's, or 0); set before the follower starts.
	from uint64
	// behind is closed when the stream was trimmed past what the engine
	// has applied: the follower has stopped (snapshot.go).
	behind chan struct{}
}

// stop ends the iterator being read, so the follower's Next returns.
func (f *follower) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.it != nil {
		f.it.Stop()
	}
}

// Follow starts applying the stream to e, from the position after the
// one e has applied (0 for a new engine, a snapshot's for one NewEngine
// restored), in stream order, until Close. e must be an engine whose
// Config.Log is l. Every SnapshotEvery positions it captures e for the
// snapshotter (snapshot.go). It
// returns once it knows where the stream ends, which Ready waits for
// (asking again, while JetStream elects a leader, until ctx ends).
func (l *Log) Follow(ctx context.Context, e *engine.Engine) error {
	end, err := l.LastSequence(ctx)
	for err != nil {
		l.log.Debug("the stream does not say where it ends yet", "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
		end, err = l.LastSequence(ctx)
	}
	l.follow.ready = make(chan struct{})
	l.follow.behind = make(chan struct{})
	l.follow.from = e.Applied()
	l.wg.Add(2)
	go l.consume(e)
	go func() {
		defer l.wg.Done()
		if e.WaitApplied(l.ctx, end) == nil {
			l.log.Info("caught up with the stream", "position", end)
			close(l.follow.ready)
		}
	}()
	return nil
}

// Ready is closed once the engine has caught up with the stream as it was
// when Follow started: a node serves only from then on.
func (l *Log) Ready() <-chan struct{} { return l.follow.ready }

// Behind is closed when this node has fallen so far behind that the
// stream was trimmed past what it has applied: it has stopped following,
// and only a restart (from the newest snapshot) brings it up to date.
func (l *Log) Behind() <-chan struct{} { return l.follow.behind }

// consume reads the stream with an ordered consumer (JetStream recreates
// it, from where it left off, across reconnects and server restarts)
// and hands each message to the engine. When the consumer cannot go on,
// it makes a new one from the message after the last it delivered.
//
// The stream's positions have no holes but at its start, where it was
// trimmed: a message past the one expected means the entries in between
// were trimmed away, and the engine cannot apply what follows them.
func (l *Log) consume(e *engine.Engine) {
	defer l.wg.Done()
	delivered := e.Applied()
	for l.ctx.Err() == nil {
		it, err := l.messages(delivered)
		if err != nil {
			l.log.Debug("cannot follow the stream yet", "error", err)
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		for {
			msg, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					l.log.Warn("following the stream failed; starting over", "after", delivered, "error", err)
				}
				it.Stop()
				break
			}
			meta, err := msg.Metadata()
			if err != nil {
				l.log.Warn("a stream message without metadata", "error", err)
				continue
			}
			seq := meta.Sequence.Stream
			if seq <= delivered {
				continue
			}
			if seq > delivered+1 {
				l.log.Error("the stream was trimmed past this node's position: it cannot catch up; restart it, it will start from the newest snapshot",
					"applied", delivered, "stream_resumes_at", seq)
				it.Stop()
				close(l.follow.behind)
				return
			}
			for l.follow.lag.Load() && l.ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			if err := e.ApplyLogged(seq, msg.Data()); err != nil {
				it.Stop() // the engine closed
				return
			}
			l.follow.handed.Add(1)
			delivered = seq
			if l.snapshotDue(seq) {
				s, err := e.CaptureLogged(l.ctx)
				if err != nil {
					it.Stop() // the engine or the log closed
					return
				}
				l.offer(s)
			}
		}
	}
}

// messages opens an ordered consumer from the message after delivered.
func (l *Log) messages(delivered uint64) (jetstream.MessagesContext, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if delivered > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: delivered + 1}
	}
	ctx, cancel := context.WithTimeout(l.ctx, 5*time.Second)
	defer cancel()
	cons, err := l.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: ordered consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("cluster: ordered consumer: %w", err)
	}
	l.follow.mu.Lock()
	defer l.follow.mu.Unlock()
	if l.ctx.Err() != nil { // Close came in between: stop has passed
		it.Stop()
		return nil, ErrClosed
	}
	l.follow.it = it
	return it, nil
}

// Sync waits until e has applied every write the stream acknowledged
// before Sync was called: what e answers next is linearizable.
func (l *Log) Sync(ctx context.Context, e *engine.Engine) error {
	seq, err := l.LastSequence(ctx)
	if err != nil {
		return err
	}
	return e.WaitApplied(ctx, seq)
}
