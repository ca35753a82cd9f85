package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A replicated engine (Config.Log) is one of several nodes over one
// ordered log, and it proposes before it applies: a write is not applied
// when it arrives but encoded as a record (the same records the journal
// keeps, journal_record.go, carrying the proposer's timestamp and the ids
// it generated) and handed to the log. Every node, the proposer included,
// applies what the log delivers, in log order, through ApplyLogged, with
// the same code the journal's replay uses; the proposer answers its
// waiting caller with the result of that apply. So every decision a write
// makes (a version conflict, a constraint, a limit, an upsert that creates)
// is made at one point of the log, identically on every node, and every
// node computes the same state and the same revisions.
//
// Reads and watches do not need the log: they are answered from what this
// node has applied. A caller that wants them linearizable learns where the
// log ends and waits until this node has applied that far (WaitApplied);
// a write's position (WithPosition) lets a read or watch on another node
// wait for it.
//
// Time is decided once, by records: a read or a watch does not refresh a
// session's TTL on the node that serves it (nodes would disagree on the
// deadline) but proposes a refresh; a node whose clock says a session is
// past its deadline proposes its expiry, which every node applies at the
// same point of the log (replicated_time.go).
//
// # Notes
//
// Every node must run with the same Config limits, since apply checks
// them. A Journal and a Log together are not supported: a replicated
// engine starts empty, or from another node's snapshot at a log position
// (NewFromLogged, replicated_snapshot.go), and is brought up to date by
// the log.

// ReplicatedLog is the ordered log a replicated engine proposes to
// (package cluster implements it over NATS JetStream).
type ReplicatedLog interface {
	// Propose appends msg to the log; id names it, so that the log can
	// drop a retried copy (and the engine drops duplicates it applies
	// anyway, see dedupeWindow). done is called once: with msg's position
	// in the log, or with an error when it did not get there (or may not
	// have). Propose must not block: the engine's loop calls it. An error
	// that is a *LimitError (a message larger than the log takes) says
	// that msg never reaches the log: the write fails with it, as with
	// the engine's own limits, not as ErrLogUnavailable.
	//
	// Proposals of one engine must reach the log in the order of their
	// Propose calls, as far as they reach it. Several messages may be
	// concatenated into one log entry: ApplyLogged takes the
	// concatenation of messages as it takes each.
	Propose(id string, msg []byte, done func(seq uint64, err error))
}

// ErrLogUnavailable: a replicated write did not reach the log (or may not
// have: a publish whose answer was lost). It wraps ErrUnavailable; reads
// and watches go on.
var ErrLogUnavailable = fmt.Errorf("%w: the replicated log is unreachable", ErrUnavailable)

// ErrNotApplied: a replicated write's caller gave up (its context ended)
// before the write was applied. The write may still apply.
var ErrNotApplied = errors.New("engine: the write was not applied in time; it may still apply")

// replication is the engine's side of a replicated log that callers'
// goroutines use. Its fields are safe for concurrent use as each says.
type replication struct {
	log  ReplicatedLog
	node string        // random prefix of this engine's proposal ids
	next atomic.Uint64 // last proposal number handed out

	mu sync.Mutex
	// pending is the proposals whose callers wait, by id; guarded by mu.
	// Whoever removes a proposal (its apply, a failed Propose, its
	// caller giving up) is the one that completes it.
	pending map[string]*proposal
	closed  bool // guarded by mu
	// advanced is closed, and replaced, whenever applied moves; guarded
	// by mu.
	advanced chan struct{}
	// applied is the position of the last log entry applied and
	// published; written by the loop (applyLoggedCmd.finish) only.
	applied atomic.Uint64
}

func newReplication(log ReplicatedLog) *replication {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &replication{log: log, node: hex.EncodeToString(b[:]), pending: make(map[string]*proposal), advanced: make(chan struct{})}
}

// proposal is one write waiting for the log.
type proposal struct {
	// cmds are the records' commands as apply ran them, one per record,
	// and seq the log position; set on the loop, read by the caller once
	// done is closed.
	cmds []command
	seq  uint64
	err  error
	done chan struct{}
}

// take removes the proposal id from pending and returns it, if it was
// still there.
func (r *replication) take(id string) *proposal {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending[id]
	delete(r.pending, id)
	return p
}

// advance records that every log entry up to seq is applied and
// published, and wakes whoever waits for it.
func (r *replication) advance(seq uint64) {
	r.mu.Lock()
	r.applied.Store(seq)
	close(r.advanced)
	r.advanced = make(chan struct{})
	r.mu.Unlock()
}

// closeAll fails every proposal still waiting: the engine is closed.
func (r *replication) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for id, p := range r.pending {
		delete(r.pending, id)
		p.err = ErrClosed
		close(p.done)
	}
}

// ApplyLogged applies the log entry at seq, which holds one or more
// messages proposed by the engines of the log. Call it from one goroutine,
// in log order: an entry at or below Applied is skipped (a redelivery), so
// a consumer that restarts may start again anywhere behind. It returns
// once the entry is queued for the loop; Applied says when it is applied.
// An entry that does not decode is skipped with a log line, as it would
// be on every node.
func (e *Engine) ApplyLogged(seq uint64, entry []byte) error {
	if e.repl == nil {
		return errors.New("engine: ApplyLogged on an engine without a Log")
	}
	c := &applyLoggedCmd{seq: seq, entry: entry, r: e.repl}
	return e.submit(context.Background(), c)
}

// Applied returns the log position this engine has applied and published
// up to (0 before the first entry, or without a Log).
func (e *Engine) Applied() uint64 {
	if e.repl == nil {
		return 0
	}
	return e.repl.applied.Load()
}

// WaitApplied waits until this engine has applied the log up to seq, so
// that what it answers next reflects every write at or before seq.
func (e *Engine) WaitApplied(ctx context.Context, seq uint64) error {
	r := e.repl
	if r == nil {
		return nil
	}
	for {
		r.mu.Lock()
		ch := r.advanced
		r.mu.Unlock()
		if r.applied.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-e.stopped:
			return ErrClosed
		}
	}
}

// positionKey is the context key of WithPosition.
type positionKey struct{}

// WithPosition returns a context whose writes, on a replicated engine,
// store into pos the log position they were applied at: a read or watch
// on another node can WaitApplied for it.
func WithPosition(ctx context.Context, pos *uint64) context.Context {
	return context.WithValue(ctx, positionKey{}, pos)
}

// PositionTarget returns the pos of the WithPosition that ctx derives
// from, if any: a layer that reports positions too shares its caller's
// instead of hiding it behind its own.
func PositionTarget(ctx context.Context) (*uint64, bool) {
	pos, ok := ctx.Value(positionKey{}).(*uint64)
	return pos, ok
}

// propose hands recs, one write's records, to the log and waits until
// this engine has applied them; it returns their commands as apply ran
// them, one per record.
func (e *Engine) propose(ctx context.Context, recs [][]byte) ([]command, error) {
	r := e.repl
	var quota *Quota
	if _, ok := TenantFrom(ctx); ok {
		q, _ := ctx.Value(quotaKey{}).(Quota)
		quota = &q
	}
	id := r.node + "-" + strconv.FormatUint(r.next.Add(1), 36)
	msg := encodeProposal(nil, id, quota, recs)
	p := &proposal{done: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	r.pending[id] = p
	r.mu.Unlock()
	r.log.Propose(id, msg, func(_ uint64, err error) {
		if err != nil && r.take(id) == p {
			// A limit of the log (a record larger than its messages)
			// is the caller's, as the engine's own limits are: it did
			// not apply, and sending it again would not help.
			if !errors.As(err, new(*LimitError)) {
				err = fmt.Errorf("%w: %w", ErrLogUnavailable, err)
			}
			p.err = err
			close(p.done)
		}
	})
	select {
	case <-p.done:
	case <-ctx.Done():
		if r.take(id) == p {
			return nil, fmt.Errorf("%w: %w", ErrNotApplied, ctx.Err())
		}
		<-p.done // apply took it: its answer is on the way
	}
	if p.err != nil {
		return nil, p.err
	}
	if pos, ok := PositionTarget(ctx); ok {
		*pos = p.seq
	}
	return p.cmds, nil
}

// proposeOne proposes one record and returns its command, unscoped.
func proposeOne[C command](ctx context.Context, e *Engine, rec []byte) (C, error) {
	cmds, err := e.propose(ctx, [][]byte{rec})
	if err != nil {
		var zero C
		return zero, err
	}
	return unscope(cmds[0]).(C), nil
}

// unscope returns the command a scoped command wraps, or c.
func unscope(c command) command {
	if sc, ok := c.(*scoped); ok {
		return sc.command
	}
	return c
}

// newRecord starts a record of kind for a write made now through ctx.
func newRecord(ctx context.Context, kind byte, now time.Time) *encoder {
	e := &encoder{}
	var tenant *string
	if t, ok := TenantFrom(ctx); ok {
		tenant = &t
	}
	e.beginRecord(kind, now, tenant)
	return e
}

// The writes of a replicated engine, each the record its apply decodes.

func (e *Engine) replicatedCreate(ctx context.Context, req CreateSessionRequest) (SessionInfo, bool, error) {
	if req.TTL == 0 {
		req.TTL = e.cfg.SessionTTL // this node's default decides, once
	}
	rec := newRecord(ctx, recCreate, e.now())
	rec.createRequest(req)
	c, err := proposeOne[*createSessionCmd](ctx, e, rec.sealRecord())
	if err != nil {
		return SessionInfo{}, false, err
	}
	return c.res.info, c.res.created, c.err
}

// replicatedSession proposes a record naming only a session: a close or
// a heartbeat.
func replicatedSession[C command](ctx context.Context, e *Engine, kind byte, id string) (C, error) {
	rec := newRecord(ctx, kind, e.now())
	rec.string(id)
	return proposeOne[C](ctx, e, rec.sealRecord())
}

func (e *Engine) replicatedRegister(ctx context.Context, r RegisterRequest) (SetResult, error) {
	rec := newRecord(ctx, recRegister, e.now())
	rec.registerRequest(r)
	c, err := proposeOne[*registerCmd](ctx, e, rec.sealRecord())
	if err != nil {
		return SetResult{}, err
	}
	return c.res, c.err
}

// setsRecord encodes a SetMany call as the record its apply decodes; a
// call without sets is a barrier (SetBatches).
func setsRecord(ctx context.Context, req SetManyRequest, now time.Time) []byte {
	if len(req.Sets) == 0 {
		rec := newRecord(ctx, recBarrier, now)
		rec.string(req.Session)
		return rec.sealRecord()
	}
	kind := recSet
	for _, s := range req.Sets {
		if s.CreateType != 0 {
			kind = recUpsert
		}
	}
	rec := newRecord(ctx, kind, now)
	rec.string(req.Session)
	rec.bool(req.Atomic)
	rec.uvarint(uint64(len(req.Sets)))
	for _, s := range req.Sets {
		rec.setRequest(s, kind == recUpsert)
	}
	return rec.sealRecord()
}

func (e *Engine) replicatedSetMany(ctx context.Context, req SetManyRequest) (SetManyResult, error) {
	if len(req.Sets) == 0 {
		return SetManyResult{}, errorf(ErrInvalidArgument, "no updates given")
	}
	if !req.Atomic && e.repl.proposalBudget() > 0 {
		// Maybe more than one entry holds it (replicated_bound.go).
		res := e.replicatedBatches(ctx, []SetManyRequest{req})[0]
		return res.SetManyResult, res.Err
	}
	c, err := proposeOne[*setManyCmd](ctx, e, setsRecord(ctx, req, e.now()))
	if err != nil {
		return SetManyResult{}, err
	}
	return c.res, c.err
}

// replicatedBatches proposes a SetBatches call in proposals of about
// pipelineSets sets, each waited for before the next is sent, so that
// what applied is a prefix of batches, as SetBatches promises. Over a
// BoundedLog the proposals also fit its entries, and a non-atomic batch
// too large for one goes in several (replicated_bound.go); a batch the
// log refuses as a limit fails alone, as a limit does on one server.
func (e *Engine) replicatedBatches(ctx context.Context, batches []SetManyRequest) []BatchResult {
	results := make([]BatchResult, len(batches))
	budget := e.repl.proposalBudget()
	parts := splitBatches(ctx, batches, e.now(), budget)
	merged := -1 // the last batch a part's result went to
	for start := 0; start < len(parts); {
		end, sets, bytes := start, 0, 0
		for end < len(parts) {
			n := parts[end].sets
			if end > start && (sets+n > pipelineSets || budget > 0 && bytes+recordCost(parts[end].rec) > budget) {
				break
			}
			sets += n
			bytes += recordCost(parts[end].rec)
			end++
		}
		recs := make([][]byte, 0, end-start)
		for _, p := range parts[start:end] {
			recs = append(recs, p.rec)
		}
		cmds, err := e.propose(ctx, recs)
		if err != nil && end-start == 1 && isLimit(err) {
			b := parts[start].batch
			mergePart(&results[b], refusedPart(batches[b], parts[start], err), b > merged)
			merged, start = b, end
			continue
		}
		if err != nil {
			// Unknown from here on (a batch split into parts may have
			// applied in part: a prefix of its sets, as of the call).
			for i := parts[start].batch; i < len(batches); i++ {
				mergePart(&results[i], BatchResult{Err: err}, i > merged)
				merged = i
			}
			break
		}
		for i, c := range cmds {
			var res BatchResult
			switch c := unscope(c).(type) {
			case *setManyCmd:
				res = BatchResult{SetManyResult: c.res, Err: c.err}
			case *barrierCmd:
				res = BatchResult{SetManyResult: c.res, Err: c.err}
			}
			b := parts[start+i].batch
			mergePart(&results[b], res, b > merged)
			merged = b
		}
		start = end
	}
	return results
}

func (e *Engine) replicatedDelete(ctx context.Context, session, ident string) (int64, error) {
	rec := newRecord(ctx, recDelete, e.now())
	rec.deleteRequest(session, ident)
	c, err := proposeOne[*deleteCmd](ctx, e, rec.sealRecord())
	if err != nil {
		return 0, err
	}
	return c.res, c.err
}
