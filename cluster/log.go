// Package cluster runs varwatch nodes over NATS JetStream: one stream is
// the ordered log every node's engine proposes its writes to and applies,
// in stream order (see engine/replicated.go for what a node does with it).
//
// A Log is one node's connection to that stream. It publishes what its
// engine proposes, batched (everything proposed while one publish is in
// flight goes in the next message), with a Nats-Msg-Id so that a retried
// publish is stored once; and it follows the stream with an ordered
// consumer, handing every message to the engine in stream order.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/varwatch/varwatch/engine"
)

// Config says where the stream is and how to reach it. The zero value of
// every field but URL means its default.
type Config struct {
	// URL is one or more NATS server URLs, comma-separated.
	URL string
	// Stream and Subject name the stream (default "VARWATCH") and the one
	// subject it holds (default "varwatch.log"). Every node of one
	// varwatch cluster must name the same.
	Stream  string
	Subject string
	// Replicas is how many JetStream servers keep the stream when this
	// node creates it (default 3 when URL names 3 or more servers or the
	// NATS cluster has that many, else 1). It is ignored when the stream
	// exists.
	Replicas int
	// Options are passed to nats.Connect: TLS, credentials.
	Options []nats.Option
	// PublishTimeout bounds a publish (default 5s: a publish is tried
	// publishTries times with one message id within it before its writes
	// fail), and a linearizable read's question of where the stream ends.
	PublishTimeout time.Duration
	// MaxQueuedBytes bounds what proposals may wait for their publish
	// (default 64 MiB); past it a proposal fails at once.
	MaxQueuedBytes int
	// SnapshotEvery is how many stream positions apart the engine's
	// snapshots are stored in JetStream (default 10000; negative: never,
	// and the stream is never trimmed). Every node of one cluster should
	// say the same: then they capture the same positions, and one of them
	// stores each. See snapshot.go.
	SnapshotEvery int
	// SnapshotsKept is how many snapshots JetStream keeps (default and
	// least 2: with one, the stream would be trimmed to the newest
	// snapshot the moment it is stored, past every node not there yet);
	// the stream is trimmed up to the oldest of them, so a node may lag
	// about (SnapshotsKept-1)*SnapshotEvery positions and still catch up.
	SnapshotsKept int
	// Dir, when set, is a directory where the node also keeps its newest
	// snapshot, and starts from it when it is newer than JetStream's
	// (localsnapshot.go). It must exist.
	Dir    string
	Logger hclog.Logger
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = "VARWATCH"
	}
	if c.Subject == "" {
		c.Subject = "varwatch.log"
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.MaxQueuedBytes <= 0 {
		c.MaxQueuedBytes = 64 << 20
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 10000
	}
	if c.SnapshotsKept < 2 {
		c.SnapshotsKept = 2
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c
}

// publishTries is how many times one message is published, with one
// message id, before the writes it carries fail.
const publishTries = 3

// Errors a proposal fails with. The engine reports them as
// engine.ErrUnavailable. A proposal too large for a message fails with a
// *engine.LimitError instead (LimitMessageBytes): retrying it cannot help.
var (
	ErrClosed  = errors.New("cluster: closed")
	ErrBacklog = errors.New("cluster: too many writes waiting for JetStream")
)

// LimitMessageBytes names the limit a write's log record meets when it is
// larger than one message of the NATS servers may be: their max_payload
// (1 MiB unless their configuration says otherwise) less the headers of a
// publish. It is set on the NATS servers, not by a varwatch flag.
const LimitMessageBytes = "nats_max_payload"

// headerRoom is what a publish's headers take of the servers' max_payload
// (nats.go counts them in): "NATS/1.0", Nats-Msg-Id with an engine
// proposal id (under 40 bytes) and the batch count, and
// Nats-Expected-Stream with the stream's name, which is added.
const headerRoom = 128

// Log is one node's connection to the stream. It implements
// engine.ReplicatedLog; Follow starts applying the stream to an engine.
type Log struct {
	cfg    Config
	log    hclog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	maxMsg int // the largest message data the servers take, with its headers

	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the publisher, the follower, the snapshotter

	mu     sync.Mutex
	queue  []queued // proposals waiting for the publisher; guarded by mu
	queued int      // their bytes; guarded by mu
	closed bool     // guarded by mu
	wake   chan struct{}

	follow follower
	snaps  snapshots
}

type queued struct {
	id   string
	msg  []byte
	done func(seq uint64, err error)
}

// Open connects to NATS and finds the stream, creating it if no node has
// yet. It retries while the JetStream cluster is still forming, until ctx
// ends.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	cfg = cfg.withDefaults()
	// No reconnect buffer: a publish made while the connection is down
	// fails at once instead of waiting in the client to be sent when it
	// comes back, maybe minutes after its caller was told it failed.
	opts := append([]nats.Option{nats.Name("varwatch"), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1)}, cfg.Options...)
	lg := cfg.Logger
	opts = append(opts,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { lg.Warn("NATS disconnected", "error", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { lg.Info("NATS reconnected", "url", nc.ConnectedUrl()) }))
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", cfg.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	stream, err := openStream(ctx, js, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	store, err := openSnapshots(ctx, js, stream, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	l := &Log{cfg: cfg, log: lg, nc: nc, js: js, stream: stream, maxMsg: int(nc.MaxPayload()) - headerRoom - len(cfg.Stream), wake: make(chan struct{}, 1),
		snaps: snapshots{store: store, next: make(chan *engine.LoggedSnapshot, 1)}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(2)
	go l.publisher()
	go l.snapshotter()
	return l, nil
}

// openStream finds or creates the stream. While a JetStream cluster forms
// (or elects), creating a replicated stream fails for a while with "no
// suitable peers" or "cluster not available", or times out; kine's NATS
// driver retries the same way.
func openStream(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, cfg Config) (jetstream.Stream, error) {
	replicas := cfg.Replicas
	if replicas == 0 {
		replicas = 1
		if max(len(strings.Split(cfg.URL, ",")), len(nc.Servers())) >= 3 {
			replicas = 3
		}
	}
	sc := jetstream.StreamConfig{
		Name:       cfg.Stream,
		Subjects:   []string{cfg.Subject},
		Storage:    jetstream.FileStorage,
		Replicas:   replicas,
		Retention:  jetstream.LimitsPolicy,
		Duplicates: 2 * time.Minute,
	}
	for {
		try, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := js.Stream(try, cfg.Stream)
		if err == nil {
			cancel()
			return s, nil
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = js.CreateStream(try, sc)
			if err == nil || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				cancel()
				if err != nil {
					continue // another node created it first
				}
				cfg.Logger.Info("created the stream", "stream", cfg.Stream, "replicas", replicas)
				return s, nil
			}
		}
		cancel()
		cfg.Logger.Debug("the stream is not reachable yet", "error", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: stream %s: %w (last error: %v)", cfg.Stream, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Propose queues msg for the publisher; it never blocks.
func (l *Log) Propose(id string, msg []byte, done func(seq uint64, err error)) {
	l.mu.Lock()
	var err error
	switch {
	case l.closed:
		err = ErrClosed
	case len(msg) > l.maxMsg:
		// Refused here, before it waits for the publisher: the servers
		// would refuse it on every try, and so it changes nothing.
		err = &engine.LimitError{Limit: LimitMessageBytes, Value: int64(l.maxMsg),
			Detail: fmt.Sprintf("the write's log record takes %d bytes; the NATS servers' max_payload of %d bytes, less a publish's headers, leaves %d",
				len(msg), l.nc.MaxPayload(), l.maxMsg)}
	case l.queued+len(msg) > l.cfg.MaxQueuedBytes:
		err = ErrBacklog
	default:
		l.queue = append(l.queue, queued{id, msg, done})
		l.queued += len(msg)
	}
	l.mu.Unlock()
	if err != nil {
		done(0, err)
		return
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// MaxEntryBytes is the largest proposal Propose takes: what the servers'
// max_payload leaves once a publish's headers are counted. The engine
// sizes its proposals by it (engine.BoundedLog).
func (l *Log) MaxEntryBytes() int { return l.maxMsg }

// publisher publishes what is queued, one message at a time: whatever
// queued during a publish goes in the next message (up to the servers'
// largest), which keeps proposals in order and batches them under load.
func (l *Log) publisher() {
	defer l.wg.Done()
	for {
		select {
		case <-l.wake:
		case <-l.ctx.Done():
			return
		}
		for {
			batch, data := l.take()
			if len(batch) == 0 {
				break
			}
			l.publish(batch, data)
		}
	}
}

// take removes from the queue the proposals of the next message, and
// returns them with the message.
func (l *Log) take() ([]queued, []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, size := 0, 0
	for n < len(l.queue) && (n == 0 || size+len(l.queue[n].msg) <= l.maxMsg) {
		size += len(l.queue[n].msg)
		n++
	}
	batch := l.queue[:n:n]
	l.queue = l.queue[n:]
	l.queued -= size
	if n == 1 {
		return batch, batch[0].msg
	}
	data := make([]byte, 0, size)
	for _, q := range batch {
		data = append(data, q.msg...)
	}
	return batch, data
}

// publish stores one message and answers its proposals. The message id
// is its first proposal's (with the count, when it carries several), the
// same on every try, so that a try the stream stored but whose answer was
// lost is not stored again.
func (l *Log) publish(batch []queued, data []byte) {
	id := batch[0].id
	if len(batch) > 1 {
		id += "+" + strconv.Itoa(len(batch))
	}
	msg := &nats.Msg{Subject: l.cfg.Subject, Data: data}
	var err error
	for try := 1; try <= publishTries; try++ {
		ctx, cancel := context.WithTimeout(l.ctx, l.cfg.PublishTimeout/publishTries)
		var ack *jetstream.PubAck
		ack, err = l.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(l.cfg.Stream))
		cancel()
		if err == nil {
			for _, q := range batch {
				q.done(ack.Sequence, nil)
			}
			return
		}
		if l.ctx.Err() != nil {
			err = ErrClosed
			break
		}
		l.log.Debug("publish failed", "try", try, "id", id, "error", err)
		if try < publishTries {
			// A publish while the connection is down fails at once: give
			// the reconnect (to another server) a moment.
			select {
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			case <-l.ctx.Done():
			}
		}
	}
	l.log.Warn("writes failed: JetStream did not store them", "writes", len(batch), "error", err)
	for _, q := range batch {
		q.done(0, fmt.Errorf("cluster: JetStream: %w", err))
	}
}

// LastSequence asks the stream where it ends: the position a read must
// wait for to see every write acknowledged before it began (etcd's
// ReadIndex).
//
// It waits at most PublishTimeout for the answer, and fails at once while
// the connection to NATS is down.
func (l *Log) LastSequence(ctx context.Context) (uint64, error) {
	if st := l.nc.Status(); st != nats.CONNECTED {
		return 0, fmt.Errorf("cluster: not connected to NATS (%v)", st)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("cluster: stream info: %w", err)
	}
	return info.State.LastSeq, nil
}

// Close stops publishing and following, fails what waits to be published,
// and closes the connection.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.follow.stop()
	l.wg.Wait()
	l.mu.Lock()
	queue := l.queue
	l.queue, l.queued = nil, 0
	l.mu.Unlock()
	for _, q := range queue {
		q.done(0, ErrClosed)
	}
	l.nc.Close()
	return nil
}
