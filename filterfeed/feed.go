// Package filterfeed runs filter chains over a session's changes once for
// every watch that shares them.
//
// A filtered watch names its chain (a *plugins.Chain, which the plugin
// host hands out once for every watch with the same filters and params).
// The watches of one session sharing a chain share a chainFeed: one
// goroutine holding
// one engine subscription to the whole session, which drains it, runs the
// chain once per drained batch and fans the surviving events out to its
// members. Each member keeps only the events of its own variables, in a
// bounded queue that its watch drains exactly as it would drain an engine
// subscription. So a chain runs once per update however many watches
// share it, never on the engine loop, in revision order. The package knows
// nothing of gRPC: grpcapi turns its errors into statuses.
//
// Joining without a gap or a duplicate: the feed admits a member between
// two drains, when it has processed every event up to some revision W and
// forwards everything after W to the member. Only then does the member
// take its snapshot (an engine watch with initial values, closed at once),
// at a revision S >= W, and it keeps the forwarded events with revision
// > S. Its initial values go through the chain too, on the member's
// goroutine (Chain.Run serializes with the feed).
//
// The feed runs the chain only on the events some member wants: those of
// the variables any of its members has watched since the feed started
// (the union only grows, so a filter's state for a variable is either
// fresh or current, never stale; see plugins/RATIONALE.md). While a member
// is admitted but has not taken its snapshot yet, the feed runs everything.
//
// With coalesce, a member merges the waiting changes that survived the
// chain, per variable; its count and range then cover those changes only.
// Not supported with filters: resuming from a revision.
// plugins/RATIONALE.md ("Integration") says why this design and these
// limits.
package filterfeed

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/plugins"
)

// Defaults of Config.
const (
	// DefaultFeedBuffer is how many events may wait for a chain feed
	// before the engine cuts it off (ending every member with
	// engine.ErrSlowConsumer): large, since one feed serves many watches.
	DefaultFeedBuffer = 1 << 20
	// DefaultMemberBuffer is how many filtered events may wait for one
	// member before it alone is cut off with engine.ErrSlowConsumer.
	DefaultMemberBuffer = 65536
)

// Backend is what the feeds need of the engine.
type Backend interface {
	Watch(ctx context.Context, req engine.WatchRequest) (*engine.Subscription, error)
}

// Config configures Feeds.
type Config struct {
	Backend Backend
	Logger  hclog.Logger
	// FeedBuffer and MemberBuffer bound the queues (zero: the defaults).
	FeedBuffer, MemberBuffer int
}

// Feeds is the registry of running chain feeds.
type Feeds struct {
	cfg Config

	mu sync.Mutex // guards m; taken before any chainFeed.mu
	m  map[feedKey]*chainFeed
	wg sync.WaitGroup // running feed goroutines
}

// New returns an empty registry.
func New(cfg Config) *Feeds {
	if cfg.Backend == nil {
		panic("filterfeed: Config.Backend is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.FeedBuffer <= 0 {
		cfg.FeedBuffer = DefaultFeedBuffer
	}
	if cfg.MemberBuffer <= 0 {
		cfg.MemberBuffer = DefaultMemberBuffer
	}
	return &Feeds{cfg: cfg, m: map[feedKey]*chainFeed{}}
}

// Active returns how many feeds are running.
func (fs *Feeds) Active() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.m)
}

// Wait waits until every feed goroutine has exited (each exits once its
// last member has left or the engine ended its subscription).
func (fs *Feeds) Wait() { fs.wg.Wait() }

// EndError is an error of Open that ended the member before it started:
// its feed failed, or the chain failed on the initial values. Err is what
// a running member would have ended with.
type EndError struct{ Err error }

func (e *EndError) Error() string { return e.Err.Error() }
func (e *EndError) Unwrap() error { return e.Err }

// Open registers a filtered watch of req through chain: a member of the
// chain's feed for the session, started at a snapshot of its own (req's
// variables or pattern, its initial values through the chain when it asks
// for them). Close the member to leave. req.Resume is not supported (a
// replay through a shared, stateful chain cannot reproduce what the watch
// would have seen); the caller refuses it.
func (fs *Feeds) Open(ctx context.Context, req engine.WatchRequest, chain *plugins.Chain) (_ *Member, err error) {
	m, err := fs.join(ctx, req.Session, chain, req.Coalesce, req.OnReady)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	select {
	case <-m.joined:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := m.Err(); err != nil {
		return nil, &EndError{err}
	}

	// The snapshot, at S >= the revision the feed admitted m at.
	snap, err := fs.cfg.Backend.Watch(ctx, engine.WatchRequest{Session: req.Session, Variables: req.Variables,
		Pattern: req.Pattern, IncludeInitialValues: true, Incarnation: req.Incarnation})
	if err != nil {
		return nil, err
	}
	var initial []engine.Event
	for {
		ev, err := snap.Next(ctx)
		if err != nil {
			snap.Close()
			return nil, err
		}
		initial = append(initial, ev)
		if ev.Type == engine.EventInitialValuesComplete {
			break
		}
	}
	snap.Close()
	rev := snap.SnapshotRevision()
	pattern := req.Pattern
	if len(req.Variables) == 0 && pattern == "" {
		pattern = "*"
	}
	w := watched{ids: map[string]bool{}}
	if pattern != "" {
		g, err := engine.CompileGlob(pattern)
		if err != nil {
			return nil, err
		}
		w.glob = &g
	}
	for _, ev := range initial[:len(initial)-1] {
		w.ids[ev.Variable.ID] = true
	}
	if req.IncludeInitialValues {
		if initial, err = runChain(context.WithoutCancel(ctx), chain, initial); err != nil {
			return nil, &EndError{err}
		}
	} else {
		initial = nil
	}
	m.start(rev, snap.Incarnation(), w, initial)
	return m, nil
}

// feedKey identifies a chain feed: one chain on one session.
type feedKey struct {
	chain   *plugins.Chain
	session string
}

// join adds a member to the feed of (chain, session), starting the feed
// if there is none. The member is admitted when m.joined is closed.
func (fs *Feeds) join(ctx context.Context, session string, chain *plugins.Chain, coalesce bool, onReady func()) (*Member, error) {
	key := feedKey{chain, session}
	m := newMember(fs, fs.cfg.MemberBuffer, coalesce, onReady)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.m[key]
	if f == nil {
		sub, err := fs.cfg.Backend.Watch(ctx, engine.WatchRequest{Session: session, Pattern: "*", Buffer: fs.cfg.FeedBuffer})
		if err != nil {
			return nil, err
		}
		f = &chainFeed{key: key, sub: sub, wake: make(chan struct{}, 1), processed: sub.SnapshotRevision(),
			log: fs.cfg.Logger.With("session", session, "chain", chain.Name())}
		fs.m[key] = f
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			f.run(fs)
		}()
	}
	m.feed = f
	f.mu.Lock()
	f.joining = append(f.joining, m)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return m, nil
}

// leave removes m from f; the last member to leave stops the feed.
func (fs *Feeds) leave(f *chainFeed, m *Member) {
	m.end(engine.ErrUnsubscribed)
	fs.mu.Lock()
	f.mu.Lock()
	f.members = slices.DeleteFunc(f.members, func(x *Member) bool { return x == m })
	f.joining = slices.DeleteFunc(f.joining, func(x *Member) bool { return x == m })
	last := len(f.members) == 0 && len(f.joining) == 0
	if last && fs.m[f.key] == f {
		delete(fs.m, f.key)
	}
	f.mu.Unlock()
	fs.mu.Unlock()
	if last {
		f.sub.Close() // the feed goroutine sees it and exits
	}
}

// chainFeed runs one chain over one session's events for all the streams
// that share it.
//
// # Notes
//
// Owned by its goroutine (run): sub, processed and the chain's Run calls.
// members and joining are guarded by mu, which streams take to join and
// leave.
type chainFeed struct {
	key       feedKey
	sub       *engine.Subscription
	wake      chan struct{} // capacity 1: a member is joining
	processed int64
	log       hclog.Logger
	// wanted is every variable a started member has watched since the
	// feed started: the chain runs on nothing else. Owned by run.
	wanted union

	mu      sync.Mutex
	members []*Member
	joining []*Member
}

// run is the feed's goroutine: admit joiners, drain, filter, fan out.
func (f *chainFeed) run(fs *Feeds) {
	var spare, kept []engine.Event
	var ms []*Member
	for {
		f.mu.Lock()
		for _, m := range f.joining {
			close(m.joined)
		}
		f.members = append(f.members, f.joining...)
		f.joining = f.joining[:0]
		ms = append(ms[:0], f.members...)
		f.mu.Unlock()

		evs, err := f.sub.Drain(spare)
		spare = evs
		if err != nil {
			f.fail(fs, err)
			return
		}
		if len(evs) == 0 {
			select {
			case <-f.sub.Ready():
			case <-f.wake:
			}
			continue
		}
		if f.wanted.update(ms) {
			clear(kept)
			kept = f.wanted.keep(kept[:0], evs)
			evs = kept
		}
		out, err := runChain(context.Background(), f.key.chain, evs)
		f.processed = f.sub.HeartbeatRevision()
		for _, m := range ms {
			m.push(out, f.processed)
		}
		if err != nil {
			f.fail(fs, err)
			return
		}
	}
}

// fail ends every member with err and stops the feed.
func (f *chainFeed) fail(fs *Feeds, err error) {
	if !errors.Is(err, engine.ErrUnsubscribed) {
		f.log.Debug("chain feed ended", "error", err, "processed", f.processed)
	}
	fs.mu.Lock()
	if fs.m[f.key] == f {
		delete(fs.m, f.key)
	}
	f.mu.Lock()
	for _, m := range f.members {
		m.end(err)
	}
	for _, m := range f.joining {
		m.end(err)
		close(m.joined)
	}
	f.members, f.joining = nil, nil
	f.mu.Unlock()
	fs.mu.Unlock()
	f.sub.Close()
}
