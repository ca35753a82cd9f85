// Package engine is varwatch's state and its single owner: sessions of typed
// variables, revisions, and subscriptions that see every change exactly once,
// in order, after an atomic snapshot.
//
// One goroutine, the loop, owns all state. Every public method builds a
// command, sends it to the loop over a bounded channel and waits for the
// reply; nothing else ever touches a session or a variable. That makes
// "register the watcher and snapshot the values" one loop step with no window
// between them, which is the whole point (see RATIONALE.md).
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"
)

// Config tunes an Engine. The zero value is usable: every zero field means
// its default.
type Config struct {
	// SessionTTL is the TTL of sessions created without one (default 1h).
	SessionTTL time.Duration
	// ExpireWatchedSessions makes a session expire by its TTL even while
	// watches are open on it. By default a watch is use: a watched session
	// does not expire, and its TTL starts over when its last watch ends
	// (keepalive.go).
	ExpireWatchedSessions bool
	// SubscriptionBuffer is how many events may wait for a subscriber
	// before it is cut off with ErrSlowConsumer (default 65536).
	SubscriptionBuffer int
	// QueueSize bounds the command channel (default 4096).
	QueueSize int
	// MaxBatch bounds how many commands one loop cycle applies before it
	// publishes their events (default 1024).
	MaxBatch int
	// History bounds, for resuming watches: per session, at most
	// HistoryRevisions revisions (default 10000) and HistoryBytes bytes
	// (default 8 MiB); across all sessions HistoryTotalBytes (default 256
	// MiB), taken from the largest histories first. The newest revision of
	// a session is always kept.
	HistoryRevisions  int
	HistoryBytes      int
	HistoryTotalBytes int
	// Limits (see limits.go): live sessions (default 10000), variables per
	// session (default 10000) and bytes of one value's payload (default 1
	// MiB, see ValueBytes). Zero means the default, negative no limit. A
	// request past one fails with a *LimitError and changes nothing.
	MaxSessions            int
	MaxVariablesPerSession int
	MaxValueBytes          int
	// TenantQuota is the quota of every tenant whose calls (WithTenant)
	// name no other (WithQuota): live sessions (default 1000), variables
	// (default 100000) and bytes (default 1 GiB) of all its sessions
	// together. Zero fields mean the default, negative no limit. The
	// limits above apply on top of it.
	TenantQuota Quota
	// Metadata limits (metadata.go), each for one map: a session's, a
	// variable's (merged over its sets) or one request's. Entries (default
	// 256), bytes of one key (256) and of one value (16 KiB), key and
	// value bytes of the map (64 KiB); and key and value bytes of a
	// session's metadata and all its variables' together (16 MiB). Zero
	// means the default, negative no limit.
	MaxMetadataEntries      int
	MaxMetadataKeyBytes     int
	MaxMetadataValueBytes   int
	MaxMetadataBytes        int
	MaxSessionMetadataBytes int
	// MaxSendMessageBytes is the largest message the transport sends
	// (default 4 MiB; the gRPC server sets it from its own limit). A write
	// whose watch update or answer could exceed it is refused before it
	// applies (see updateBytes): applied, it would cut every watcher off
	// and answer an error about a write that happened.
	MaxSendMessageBytes int
	// SubscriptionBytes bounds the estimated memory of the events waiting
	// for one subscriber, as SubscriptionBuffer bounds their count
	// (default 64 MiB; negative: no bound); past it the subscriber is cut
	// off with ErrSlowConsumer.
	SubscriptionBytes int
	// Now is the clock (default time.Now). Tests replace it.
	Now func() time.Time
	// Journal, when set, makes every change durable before it is
	// acknowledged or published (see journal.go). Start such an engine
	// with Open, which loads what the journal holds.
	Journal Journal
	// Log, when set, makes the engine one node of several over a
	// replicated log: it proposes its writes to the log and applies what
	// the log delivers (ApplyLogged), as every node does (see
	// replicated.go). Not together with Journal, yet.
	Log ReplicatedLog
	// Logf reports what the engine cannot return to a caller, like a
	// failed background snapshot (default: discard).
	Logf func(format string, args ...any)
}

func (c Config) withDefaults() Config {
	if c.SessionTTL <= 0 {
		c.SessionTTL = time.Hour
	}
	if c.SubscriptionBuffer <= 0 {
		c.SubscriptionBuffer = 65536
	}
	if c.SubscriptionBytes == 0 {
		c.SubscriptionBytes = DefaultSubscriptionBytes
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4096
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1024
	}
	if c.HistoryRevisions <= 0 {
		c.HistoryRevisions = 10000
	}
	if c.HistoryBytes <= 0 {
		c.HistoryBytes = 8 << 20
	}
	if c.HistoryTotalBytes <= 0 {
		c.HistoryTotalBytes = 256 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	c.limitDefaults()
	return c
}

// Engine is the handle to a running loop. Its methods are safe for
// concurrent use. Close it to stop the loop.
type Engine struct {
	cfg  Config
	cmds chan command

	// closeMu makes Close wait for senders already inside submit, so that
	// after Close sets closed no command can enter cmds unseen by the loop's
	// final drain. Read-locked by submit, locked by Close.
	closeMu sync.RWMutex
	closed  bool

	stop    chan struct{} // closed by Close: the loop should finish
	stopped chan struct{} // closed by the loop when it has finished

	// storage is the journal's state as the loop last saw it
	// (StorageState); written by the loop only.
	storage atomic.Int32

	// repl is set when cfg.Log is (replicated.go).
	repl *replication
}

// New starts an engine loop. It keeps its state in memory only: an engine
// with a Journal is started with Open.
func New(cfg Config) *Engine {
	if cfg.Journal != nil {
		panic("engine: New with a Journal; use Open")
	}
	if cfg.Log != nil {
		cfg = cfg.withDefaults()
		st := newState(cfg)
		st.repl = newReplState()
		return start(cfg, st)
	}
	cfg = cfg.withDefaults()
	return start(cfg, newState(cfg))
}

// start runs a loop over st.
func start(cfg Config, st *state) *Engine {
	e := &Engine{
		cfg:     cfg,
		cmds:    make(chan command, cfg.QueueSize),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if cfg.Log != nil {
		e.repl = newReplication(cfg.Log)
	}
	go e.loop(st)
	return e
}

// Close stops the loop. Commands not yet applied fail with ErrClosed, and
// every subscription ends with ErrClosed. Close waits for the loop to exit
// and is idempotent.
func (e *Engine) Close() error {
	e.closeMu.Lock()
	if !e.closed {
		e.closed = true
		close(e.stop)
	}
	e.closeMu.Unlock()
	<-e.stopped
	if e.repl != nil {
		e.repl.closeAll()
	}
	return nil
}

// submit hands c to the loop. Once it returns nil the loop will reply to c
// exactly once, even if the engine closes in between.
func (e *Engine) submit(ctx context.Context, c command) error {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return ErrClosed
	}
	select {
	case e.cmds <- c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run submits c and waits for its result. After a successful submit it
// waits for the reply even if ctx ends: the command may already be applied,
// and a caller must not be told "failed" about a write that happened.
func run[R any](ctx context.Context, e *Engine, c command, r *reply[R]) (R, error) {
	r.done = make(chan struct{})
	if err := e.submit(ctx, withScope(ctx, c)); err != nil {
		var zero R
		return zero, err
	}
	<-r.done
	return r.res, r.err
}

func (e *Engine) now() time.Time { return e.cfg.Now() }

// CreateSession creates a session, or returns the existing one with the
// same ID (created=false; Metadata and TTL are then ignored).
func (e *Engine) CreateSession(ctx context.Context, req CreateSessionRequest) (info SessionInfo, created bool, err error) {
	if req.ID == "" {
		req.ID = newSessionID()
	}
	if req.Incarnation == "" {
		req.Incarnation = newIncarnation()
	}
	if e.repl != nil {
		return e.replicatedCreate(ctx, req)
	}
	c := &createSessionCmd{req: req, now: e.now()}
	res, err := run(ctx, e, c, &c.reply)
	return res.info, res.created, err
}

// GetSession returns a session's info and refreshes its TTL.
func (e *Engine) GetSession(ctx context.Context, id string) (SessionInfo, error) {
	c := &getSessionCmd{id: id, now: e.now()}
	return run(ctx, e, c, &c.reply)
}

// ListSessions returns every live session, sorted by ID.
func (e *Engine) ListSessions(ctx context.Context) ([]SessionInfo, error) {
	c := &listSessionsCmd{now: e.now()}
	return run(ctx, e, c, &c.reply)
}

// CloseSession deletes a session and its variables and returns how many
// variables it had. Its subscriptions receive EventSessionClosed and end.
func (e *Engine) CloseSession(ctx context.Context, id string) (int, error) {
	if e.repl != nil {
		c, err := replicatedSession[*closeSessionCmd](ctx, e, recClose, id)
		if err != nil {
			return 0, err
		}
		return c.res, c.err
	}
	c := &closeSessionCmd{id: id, now: e.now()}
	return run(ctx, e, c, &c.reply)
}

// Heartbeat refreshes a session's TTL and returns its info; an unknown or
// expired session is ErrSessionNotFound.
//
// On a replicated engine it goes through the log, like a write.
func (e *Engine) Heartbeat(ctx context.Context, id string) (SessionInfo, error) {
	if e.repl != nil {
		c, err := replicatedSession[*getSessionCmd](ctx, e, recRefresh, id)
		if err != nil {
			return SessionInfo{}, err
		}
		return c.res, c.err
	}
	return e.GetSession(ctx, id)
}

// Register creates a variable. Its Version is 1 and its CreateRevision is
// the revision of the registration.
func (e *Engine) Register(ctx context.Context, req RegisterRequest) (SetResult, error) {
	return e.register(ctx, req)
}

// Get returns a variable by id or name.
func (e *Engine) Get(ctx context.Context, session, variable string) (*Variable, error) {
	c := &getCmd{session: session, idents: []string{variable}, now: e.now()}
	res, err := run(ctx, e, c, &c.reply)
	if err != nil {
		return nil, err
	}
	if len(res.Found) == 0 {
		return nil, errorf(ErrVariableNotFound, "no variable %q in session %q", variable, session)
	}
	return res.Found[0], nil
}

// GetMany returns the variables found, in request order, and the
// identifiers that matched nothing, all read at one revision.
func (e *Engine) GetMany(ctx context.Context, session string, variables []string) (GetManyResult, error) {
	c := &getCmd{session: session, idents: variables, now: e.now()}
	return run(ctx, e, c, &c.reply)
}

// Set writes one variable.
func (e *Engine) Set(ctx context.Context, req SetRequest) (SetResult, error) {
	res, err := e.setMany(ctx, SetManyRequest{Session: req.Session, Sets: []SetRequest{req}, Atomic: true})
	if err != nil {
		return SetResult{}, err
	}
	return res.Items[0].SetResult, nil
}

// SetMany writes several variables of one session. With Atomic, all apply
// at one revision or none does, and the first failure is the error.
// Otherwise each set applies on its own, at its own revision, and
// SetManyResult.Items says how each went.
func (e *Engine) SetMany(ctx context.Context, req SetManyRequest) (SetManyResult, error) {
	return e.setMany(ctx, req)
}

// List returns the variables whose names match the glob pattern (all when
// it is empty), sorted by name.
func (e *Engine) List(ctx context.Context, session, pattern string) (ListResult, error) {
	return e.list(ctx, session, pattern)
}

// Delete removes a variable and returns the revision of the deletion. Its
// watchers receive EventVariableDeleted.
func (e *Engine) Delete(ctx context.Context, session, variable string) (int64, error) {
	if e.repl != nil {
		return e.replicatedDelete(ctx, session, variable)
	}
	c := &deleteCmd{session: session, ident: variable, now: e.now()}
	return run(ctx, e, c, &c.reply)
}

// Watch starts a subscription. The watcher is registered and the initial
// values are captured in the same loop step, at the revision returned by
// Subscription.SnapshotRevision: every change after it is delivered, none
// before it is delivered as a change.
func (e *Engine) Watch(ctx context.Context, req WatchRequest) (*Subscription, error) {
	return e.watch(ctx, req)
}

// unsubscribe asks the loop to forget sub. It is fire-and-forget: sub has
// already stopped accepting events, so a late removal only costs memory.
func (e *Engine) unsubscribe(sub *Subscription) {
	c := &unsubscribeCmd{sub: sub, now: e.now()}
	c.done = make(chan struct{})
	_ = e.submit(context.Background(), c)
}

// newIncarnation returns 64 random bits in hex: two incarnations of one
// session id colliding is then out of reach in practice.
func newIncarnation() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "s-" + hex.EncodeToString(b[:])
}
