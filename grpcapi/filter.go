package grpcapi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/plugins"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// Filtered watches.
//
// A watch that names filters (or any watch, when the server has a default
// chain) gets its chain from Filters.Acquire, which hands the same
// *plugins.Chain to every watch with the same filters and params. Streams
// of one session sharing a chain share a chainFeed: one goroutine holding
// one engine subscription to the whole session, which drains it, runs the
// chain once per drained batch and fans the surviving events out to its
// members. Each member keeps only the events of its own variables, in a
// bounded queue that its stream's pump drains exactly as it would drain an
// engine subscription. So a chain runs once per update however many
// streams share it, never on the engine loop, in revision order.
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
// Not supported with filters: start_revision (UNIMPLEMENTED).
// plugins/RATIONALE.md ("Integration") says why this design and these
// limits.

// Filters is what the server needs from the plugin host; *plugins.Manager
// implements it. Acquire returns nil when no filter applies (no filters
// requested and no default chain).
type Filters interface {
	Acquire(ctx context.Context, filters []plugins.FilterSpec) (*plugins.Chain, error)
}

var _ Filters = (*plugins.Manager)(nil)

// Defaults of filtered watches; Config fields override them.
const (
	// DefaultFeedBuffer is how many events may wait for a chain feed
	// before the engine cuts it off (ending every member with
	// RESOURCE_EXHAUSTED): large, since one feed serves many streams.
	DefaultFeedBuffer = 1 << 20
	// DefaultMemberBuffer is how many filtered events may wait for one
	// stream before it alone is cut off with RESOURCE_EXHAUSTED.
	DefaultMemberBuffer = 65536
)

// errNoFilters answers a watch with filters on a server without plugins.
var errNoFilters = status.Error(codes.FailedPrecondition, "no filters are loaded on this server")

// filtersFromProto maps a request's chain.
func filtersFromProto(fs []*pb.FilterSpec) ([]plugins.FilterSpec, error) {
	out := make([]plugins.FilterSpec, len(fs))
	for i, f := range fs {
		if f.GetName() == "" {
			return nil, invalidf("filters[%d].name is empty", i)
		}
		out[i] = plugins.FilterSpec{Name: f.GetName(), Params: f.GetParams()}
	}
	return out, nil
}

// acquireChain answers the chain for req, nil for an unfiltered watch.
func (s *Server) acquireChain(ctx context.Context, req *pb.WatchVariablesRequest) (*plugins.Chain, error) {
	if s.filters == nil {
		if len(req.GetFilters()) > 0 {
			return nil, errNoFilters
		}
		return nil, nil
	}
	specs, err := filtersFromProto(req.GetFilters())
	if err != nil {
		return nil, err
	}
	chain, err := s.filters.Acquire(ctx, specs)
	var fe *plugins.FilterError
	switch {
	case errors.As(err, &fe):
		return nil, invalidf("%s", strings.TrimPrefix(fe.Error(), "plugins: "))
	case errors.Is(err, plugins.ErrClosed):
		return nil, status.Error(codes.Unavailable, "server is shutting down")
	case err != nil:
		return nil, status.Errorf(codes.Internal, "starting filters: %v", err)
	}
	if chain != nil && req.StartRevision != nil {
		chain.Release()
		return nil, unimplementedf("start_revision with filters is not supported (a replay through a shared, stateful chain cannot reproduce what the stream would have seen); watch with include_initial_values instead")
	}
	return chain, nil
}

// openFiltered registers a filtered watch: a member of its chain's feed
// for the session, started at a snapshot of its own. The caller keeps the
// chain and the stream slot; the result's close leaves the feed.
func (s *Server) openFiltered(ctx context.Context, wreq engine.WatchRequest, pace pacing, chain *plugins.Chain) (_ *openedWatch, err error) {
	f, m, err := s.join(ctx, wreq.Session, chain, wreq.Coalesce, wreq.OnReady)
	if err != nil {
		return nil, toStatus(err)
	}
	defer func() {
		if err != nil {
			s.leave(f, m)
		}
	}()
	select {
	case <-m.joined:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err := m.Err(); err != nil {
		return nil, s.endStatus(ctx, s.log, 0, err, true)
	}

	// The snapshot, at S >= the revision the feed admitted m at.
	snap, err := s.backend.Watch(ctx, engine.WatchRequest{Session: wreq.Session, Variables: wreq.Variables,
		Pattern: wreq.Pattern, IncludeInitialValues: true, Incarnation: wreq.Incarnation})
	if err != nil {
		return nil, toStatus(err)
	}
	var initial []engine.Event
	for {
		ev, err := snap.Next(ctx)
		if err != nil {
			snap.Close()
			return nil, toStatus(err)
		}
		initial = append(initial, ev)
		if ev.Type == engine.EventInitialValuesComplete {
			break
		}
	}
	snap.Close()
	rev := snap.SnapshotRevision()
	pattern := wreq.Pattern
	if len(wreq.Variables) == 0 && pattern == "" {
		pattern = "*"
	}
	w := watched{ids: map[string]bool{}}
	if pattern != "" {
		g, err := engine.CompileGlob(pattern)
		if err != nil {
			return nil, toStatus(err)
		}
		w.glob = &g
	}
	for _, ev := range initial[:len(initial)-1] {
		w.ids[ev.Variable.ID] = true
	}
	if wreq.IncludeInitialValues {
		if initial, err = runChain(context.WithoutCancel(ctx), chain, initial); err != nil {
			return nil, s.endStatus(ctx, s.log, 0, err, true)
		}
	} else {
		initial = nil
	}
	m.start(rev, snap.Incarnation(), w, initial)

	log := s.log.With("session", wreq.Session, "snapshot_revision", rev, "chain", chain.Name())
	log.Debug("filtered watch started", "variables", len(wreq.Variables), "pattern", wreq.Pattern, "heartbeat", pace.heartbeat)
	return &openedWatch{src: m, pace: pace, greet: !wreq.IncludeInitialValues, filtered: true, snapshot: rev,
		from: startPosition(wreq, rev), incarnation: snap.Incarnation(), log: log, close: func() { s.leave(f, m) }}, nil
}

// feedKey identifies a chain feed: one chain on one session.
type feedKey struct {
	chain   *plugins.Chain
	session string
}

// feeds is the registry of running chain feeds.
type feeds struct {
	mu sync.Mutex // guards m; taken before any chainFeed.mu
	m  map[feedKey]*chainFeed
	wg sync.WaitGroup // running feed goroutines
}

// join adds a member to the feed of (chain, session), starting the feed
// if there is none. The member is admitted when m.joined is closed.
func (s *Server) join(ctx context.Context, session string, chain *plugins.Chain, coalesce bool, onReady func()) (*chainFeed, *member, error) {
	key := feedKey{chain, session}
	m := &member{
		joined:   make(chan struct{}),
		ready:    make(chan struct{}, 1),
		onReady:  onReady,
		done:     make(chan struct{}),
		limit:    s.memberBuffer,
		floor:    -1,
		coalesce: coalesce,
		latest:   map[string]int{},
	}
	s.feeds.mu.Lock()
	defer s.feeds.mu.Unlock()
	f := s.feeds.m[key]
	if f == nil {
		sub, err := s.backend.Watch(ctx, engine.WatchRequest{Session: session, Pattern: "*", Buffer: s.feedBuffer})
		if err != nil {
			return nil, nil, err
		}
		f = &chainFeed{key: key, sub: sub, wake: make(chan struct{}, 1), processed: sub.SnapshotRevision(),
			log: s.log.With("session", session, "chain", chain.Name())}
		s.feeds.m[key] = f
		s.feeds.wg.Add(1)
		go func() {
			defer s.feeds.wg.Done()
			f.run(s)
		}()
	}
	f.mu.Lock()
	f.joining = append(f.joining, m)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return f, m, nil
}

// leave removes m from f; the last member to leave stops the feed.
func (s *Server) leave(f *chainFeed, m *member) {
	m.end(engine.ErrUnsubscribed)
	s.feeds.mu.Lock()
	f.mu.Lock()
	f.members = slices.DeleteFunc(f.members, func(x *member) bool { return x == m })
	f.joining = slices.DeleteFunc(f.joining, func(x *member) bool { return x == m })
	last := len(f.members) == 0 && len(f.joining) == 0
	if last && s.feeds.m[f.key] == f {
		delete(s.feeds.m, f.key)
	}
	f.mu.Unlock()
	s.feeds.mu.Unlock()
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
	members []*member
	joining []*member
}

// run is the feed's goroutine: admit joiners, drain, filter, fan out.
func (f *chainFeed) run(s *Server) {
	var spare, kept []engine.Event
	var ms []*member
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
			f.fail(s, err)
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
			f.fail(s, err)
			return
		}
	}
}

// fail ends every member with err and stops the feed.
func (f *chainFeed) fail(s *Server, err error) {
	if !errors.Is(err, engine.ErrUnsubscribed) {
		f.log.Debug("chain feed ended", "error", err, "processed", f.processed)
	}
	s.feeds.mu.Lock()
	if s.feeds.m[f.key] == f {
		delete(s.feeds.m, f.key)
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
	s.feeds.mu.Unlock()
	f.sub.Close()
}

// runChain filters evs through chain and returns the survivors, replaced
// where a filter said so. Events that are not about a variable (session
// closed, initial_values_complete) pass untouched. On a *FaultError
// (on_error=close) or ErrClosed it returns nothing but the error.
func runChain(ctx context.Context, chain *plugins.Chain, evs []engine.Event) ([]engine.Event, error) {
	ups := make([]plugins.Update, 0, len(evs))
	idx := make([]int, 0, len(evs))
	for i := range evs {
		if u, ok := eventToUpdate(&evs[i]); ok {
			ups = append(ups, u)
			idx = append(idx, i)
		}
	}
	vs, err := chain.Run(ctx, ups, nil)
	if err != nil {
		return nil, err
	}
	out := make([]engine.Event, 0, len(evs))
	j := 0
	for i := range evs {
		if j < len(idx) && idx[j] == i {
			v := vs[j]
			j++
			switch v.Action {
			case plugins.Drop:
				continue
			case plugins.Replace:
				out = append(out, applyVerdict(evs[i], v))
				continue
			}
		}
		out = append(out, evs[i])
	}
	return out, nil
}

// watched is what a member watches, as the engine routes events: the ids
// it was watching at its snapshot, plus a glob (registrations: glob only).
// Immutable once the member has started.
type watched struct {
	ids  map[string]bool
	glob *engine.Glob
}

// union is what a feed's members have watched, merged member by member as
// they start; it never shrinks (a variable's filter state stays current
// from the first time a member watches it).
//
// # Notes
//
// Owned by the feed's goroutine.
type union struct {
	ids    map[string]bool
	globs  []*engine.Glob
	merged map[*member]bool
}

// update merges the started members of ms and reports whether the feed
// may skip events: false while some member has not started (it still
// keeps every event) and once a glob matches everything.
func (u *union) update(ms []*member) bool {
	if u.merged == nil {
		u.ids, u.merged = map[string]bool{}, map[*member]bool{}
	}
	narrow := true
	for _, m := range ms {
		if u.merged[m] {
			continue
		}
		m.mu.Lock()
		started, w := m.started, m.w
		m.mu.Unlock()
		if !started {
			narrow = false
			continue
		}
		u.merged[m] = true
		for id := range w.ids {
			u.ids[id] = true
		}
		if w.glob != nil && !slices.ContainsFunc(u.globs, func(g *engine.Glob) bool { return g.String() == w.glob.String() }) {
			u.globs = append(u.globs, w.glob)
		}
	}
	// Members that left stay merged; forget their pointers only.
	if len(u.merged) > 2*len(ms)+16 {
		live := make(map[*member]bool, len(ms))
		for _, m := range ms {
			if u.merged[m] {
				live[m] = true
			}
		}
		u.merged = live
	}
	return narrow && !slices.ContainsFunc(u.globs, func(g *engine.Glob) bool { return g.String() == "*" })
}

// keep appends to dst the events of evs some member wants, and every
// event that is not about a variable.
func (u *union) keep(dst, evs []engine.Event) []engine.Event {
	for i := range evs {
		ev := &evs[i]
		if ev.Variable == nil || u.wants(ev) {
			dst = append(dst, *ev)
		}
	}
	return dst
}

func (u *union) wants(ev *engine.Event) bool {
	if ev.Type != engine.EventVariableRegistered && u.ids[ev.Variable.ID] {
		return true
	}
	for _, g := range u.globs {
		if g.Match(ev.Variable.Name) {
			return true
		}
	}
	return false
}

func (w *watched) wants(ev *engine.Event) bool {
	if ev.Variable == nil {
		return ev.Type == engine.EventSessionClosed
	}
	matches := w.glob != nil && w.glob.Match(ev.Variable.Name)
	if ev.Type == engine.EventVariableRegistered {
		return matches
	}
	return matches || w.ids[ev.Variable.ID]
}

// member is one filtered stream's end of a chain feed: a bounded queue the
// feed pushes to without blocking and the stream's pump drains. It offers
// the pump the same methods as an *engine.Subscription.
//
// # Notes
//
// Everything below mu is guarded by it; the feed pushes, the pump drains.
// lastRev is the pump's.
type member struct {
	joined  chan struct{} // closed when the feed has admitted it
	ready   chan struct{} // capacity 1, signalled on push and end
	onReady func()        // called on every signal (engine.WatchRequest.OnReady); immutable
	done    chan struct{}

	mu          sync.Mutex
	started     bool
	snap        int64
	incarnation string // the session's, from the snapshot
	w           watched
	queue       []engine.Event
	limit       int
	// floor: events with a revision <= floor are not for this member.
	floor     int64
	processed int64
	err       error
	// Coalescing (coalesce is immutable): latest maps a variable id to its
	// waiting value change in queue; dead counts merged-away entries.
	coalesce bool
	latest   map[string]int
	dead     int

	lastRev int64
}

// push appends the events of a batch the feed has filtered, up to revision
// processed. Before start it keeps every variable event (start picks).
func (m *member) push(evs []engine.Event, processed int64) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	n := len(m.queue)
	for i := range evs {
		ev := &evs[i]
		// session_closed carries the session's last revision, which may
		// be the member's snapshot: it is never before the floor.
		closed := ev.Type == engine.EventSessionClosed
		if (ev.Revision <= m.floor && !closed) || (m.started && !m.w.wants(ev)) {
			continue
		}
		m.add(*ev)
	}
	m.processed = processed
	// A started coalescing member is bounded by its variables instead.
	over := len(m.queue)-m.dead > m.limit && !(m.coalesce && m.started)
	if over {
		m.queue = nil
	}
	grew := len(m.queue) > n
	m.mu.Unlock()
	if over {
		m.end(engine.ErrSlowConsumer)
		return
	}
	if grew {
		m.signal()
	}
}

// start sets the member's snapshot: it keeps the queued events after rev
// that it watches, behind its (filtered) initial values.
func (m *member) start(rev int64, incarnation string, w watched, initial []engine.Event) {
	m.mu.Lock()
	m.started, m.snap, m.w, m.floor, m.lastRev = true, rev, w, rev, rev
	m.incarnation = incarnation
	queued := m.queue
	m.queue = slices.Clone(initial)
	for i := range queued {
		if ev := &queued[i]; (ev.Revision > rev || ev.Type == engine.EventSessionClosed) && w.wants(ev) {
			m.add(*ev)
		}
	}
	m.limit += len(initial)
	m.mu.Unlock()
	m.signal()
}

// end records why the member ended, once; queued events stay drainable
// (a slow consumer's were dropped by push).
func (m *member) end(err error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	m.err = err
	m.mu.Unlock()
	close(m.done)
	m.signal()
}

func (m *member) signal() {
	select {
	case m.ready <- struct{}{}:
	default:
	}
	if m.onReady != nil {
		m.onReady()
	}
}

// Err returns why the member ended, or nil.
func (m *member) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *member) SnapshotRevision() int64 { return m.snap }

func (m *member) Ready() <-chan struct{} { return m.ready }

func (m *member) Done() <-chan struct{} { return m.done }

func (m *member) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queue) - m.dead
}

// add appends ev to the queue; a started coalescing member first merges a
// waiting value change of the same variable into it, as a coalescing
// engine subscription does (the merged change moves to the end, keeping
// revisions in order; the old entry stays as a zero Event, counted in
// dead, until Drain). With mu held.
func (m *member) add(ev engine.Event) {
	if m.coalesce && m.started && ev.Type == engine.EventValueChange {
		id := ev.Variable.ID
		if i, ok := m.latest[id]; ok {
			ev = engine.Coalesce(m.queue[i], ev)
			m.queue[i] = engine.Event{}
			m.dead++
		}
		m.latest[id] = len(m.queue)
	}
	m.queue = append(m.queue, ev)
}

// Drain takes every queued event, as Subscription.Drain.
func (m *member) Drain(spare []engine.Event) ([]engine.Event, error) {
	clear(spare)
	m.mu.Lock()
	evs := m.queue
	m.queue = spare[:0]
	err := m.err
	if m.dead > 0 {
		evs = slices.DeleteFunc(evs, func(ev engine.Event) bool { return ev.Type == 0 })
	}
	clear(m.latest)
	m.dead = 0
	m.mu.Unlock()
	if len(evs) == 0 {
		return evs, err
	}
	m.lastRev = max(m.lastRev, evs[len(evs)-1].Revision)
	return evs, nil
}

// Heartbeat is a heartbeat at the revision up to which everything the
// feed processed has been drained.
func (m *member) Heartbeat(now time.Time) engine.Event {
	m.mu.Lock()
	rev := m.lastRev
	if len(m.queue) == 0 {
		rev = max(rev, m.processed)
	}
	incarnation := m.incarnation
	m.mu.Unlock()
	return engine.Event{Type: engine.EventHeartbeat, Revision: rev, Time: now, Incarnation: incarnation}
}
