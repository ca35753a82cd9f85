package engine

import (
	"fmt"
	"time"
)

// The loop's side of a replicated engine (replicated.go): applying what
// the log delivers.

// Record kinds only a replicated log holds (the journal keeps closes and
// expiries as their effect, recRemove).
const (
	recClose   byte = 32 // a CloseSession: the session id
	recRefresh byte = 33 // a heartbeat or a TTL refresh: the session id
	// recExpire: the session id, incarnation and deadline a node's clock
	// found past; it applies only while the deadline is still that one.
	recExpire  byte = 34
	recBarrier byte = 35 // a SetBatches barrier: the session id
)

// proposalVersion is the first byte of every proposal's encoding.
const proposalVersion = 1

// dedupeWindow is how many proposal ids a replicated engine remembers to
// drop a duplicate (a proposal published twice after a timed-out first
// try landed after all). Every node sees the same log, so every node
// drops the same duplicates. A package variable so that tests can shrink
// it.
var dedupeWindow = 1 << 16

// replState is the replicated part of state. Owned by the loop goroutine.
type replState struct {
	// applying is set while a logged record applies: then sessions
	// expire only by their records, and use refreshes their TTL (as in
	// replay); otherwise the loop serves a read, which changes nothing
	// (readSession).
	applying bool
	applied  uint64 // the log position applied last
	// seen and ring are the ids of the last dedupeWindow proposals
	// applied, ring in order of apply (next: the oldest).
	seen map[string]struct{}
	ring []string
	next int
	// outbox is the proposals the loop makes itself (refreshes,
	// expiries), handed to the log after the cycle (flushOutbox).
	outbox []outgoing
	enc    encoder
	// asked is when this node last proposed a refresh of a session, and
	// look when proposeExpiries looks at it next (replicated_time.go).
	asked map[*session]time.Time
	look  map[*session]time.Time
}

type outgoing struct {
	id  string
	msg []byte
}

func newReplState() *replState {
	return &replState{seen: make(map[string]struct{}), asked: make(map[*session]time.Time), look: make(map[*session]time.Time)}
}

// remember notes that proposal id applied; it reports false if it had
// already.
func (r *replState) remember(id string) bool {
	if _, dup := r.seen[id]; dup {
		return false
	}
	r.seen[id] = struct{}{}
	if len(r.ring) < dedupeWindow {
		r.ring = append(r.ring, id)
		return true
	}
	delete(r.seen, r.ring[r.next])
	r.ring[r.next] = id
	r.next = (r.next + 1) % len(r.ring)
	return true
}

// applyLoggedCmd applies one log entry. Its waiters are the proposals of
// this engine the entry held; they are answered after the cycle's events
// are published.
type applyLoggedCmd struct {
	seq     uint64
	entry   []byte
	r       *replication
	skipped bool // at or below what was applied: a redelivery
	waiters []*proposal
}

func (c *applyLoggedCmd) apply(st *state) {
	if c.seq <= st.repl.applied {
		c.skipped = true
		return
	}
	st.repl.applied = c.seq
	d := &decoder{buf: c.entry}
	for len(d.buf) > 0 && d.err == nil {
		body := d.bytesRef()
		if d.err != nil {
			break
		}
		id, quota, recs, err := decodeProposal(body)
		if err != nil {
			st.cfg.Logf("engine: log entry %d: skipping a proposal that does not decode: %v", c.seq, err)
			continue
		}
		if !st.repl.remember(id) {
			continue
		}
		cmds := make([]command, len(recs))
		for i, rec := range recs {
			cmds[i] = st.applyLogged(rec, quota)
		}
		if hook := testHookApplied; hook != nil {
			hook(st, id, cmds)
		}
		if p := c.r.take(id); p != nil {
			p.cmds, p.seq = cmds, c.seq
			c.waiters = append(c.waiters, p)
		}
	}
	if d.err != nil {
		st.cfg.Logf("engine: log entry %d does not decode: %v", c.seq, d.err)
	}
}

// testHookApplied, when set (by tests, before the engines start), hears
// every proposal each engine applied, with its commands as they applied.
var testHookApplied func(st *state, id string, cmds []command)

func (c *applyLoggedCmd) finish() {
	if !c.skipped {
		c.r.advance(c.seq)
	}
	for _, p := range c.waiters {
		close(p.done)
	}
}

// fail: the engine closed before the entry applied; its waiters are
// still pending and closeAll fails them.
func (c *applyLoggedCmd) fail(error) {}

// brokenCmd stands for a record that did not decode.
type brokenCmd struct {
	reply[struct{}]
}

func (*brokenCmd) apply(*state) {}

// applyLogged decodes one record of a proposal and applies it; it returns
// the command, as apply left it.
func (st *state) applyLogged(rec []byte, quota *Quota) command {
	kind, now, tenant, d, err := parseRecord(rec)
	var c command
	if err == nil {
		switch kind {
		case recClose:
			c = &closeSessionCmd{id: d.string(), now: now}
		case recRefresh:
			c = &getSessionCmd{id: d.string(), now: now}
		case recExpire:
			c = &expireCmd{id: d.string(), incarnation: d.string(), deadline: time.Unix(0, d.varint()), now: now}
		case recBarrier:
			c = &barrierCmd{session: d.string(), now: now}
		default:
			c = decodeCommand(kind, now, d)
		}
		if c == nil {
			err = fmt.Errorf("%w: unknown record kind %d", errCorrupt, kind)
		} else {
			err = d.finished()
		}
	}
	if err != nil {
		st.cfg.Logf("engine: skipping a logged record: %v", err)
		b := &brokenCmd{}
		b.fail(err)
		return b
	}
	if tenant != nil {
		sc := scope{tenant: *tenant}
		if quota != nil {
			sc.quota = *quota
		}
		c = &scoped{command: c, scope: sc}
	}
	st.repl.applying = true
	applyDecided(st, c)
	st.repl.applying = false
	return c
}

// applyDecided applies c with the checks its caller would make off the
// loop made here: on a replicated engine the caller is the log, and the
// outcome must be decided in this one step, at this point of the log.
func applyDecided(st *state, c command) {
	switch ic := unscope(c).(type) {
	case *registerCmd:
		ic.pre = checkRegistration(ic.req, &st.cfg)
		c.apply(st)
		if ic.route != nil { // routing was too costly for a caller's turn
			ic.routes, ic.route = routeName(ic.req.Name, ic.route), nil
			c.apply(st)
		}
	case *setManyCmd:
		ic.req.Sets, ic.pre = precheck(&st.cfg, ic.req.Sets)
		for range maxCheckRounds {
			c.apply(st)
			if len(ic.needs) == 0 {
				return
			}
			ic.pre = answerNeeds(ic.req.Sets, ic.pre, ic.needs)
			ic.needs = nil
		}
		// Nothing changes between rounds here: a second one never needs
		// more.
		panic("engine: a logged set still needs checks after answering them")
	default:
		c.apply(st)
	}
}

// expireCmd is a logged expiry: it removes the session only if it is still
// the incarnation, and the deadline, the proposer saw.
type expireCmd struct {
	reply[struct{}]
	id, incarnation string
	deadline, now   time.Time
}

func (c *expireCmd) apply(st *state) {
	s := st.sessions[c.id]
	if s == nil || s.incarnation != c.incarnation || !s.expiresAt.Equal(c.deadline) {
		return // used since, or gone already
	}
	st.removeSession(s, c.now)
}

// barrierCmd is a SetBatches barrier: it answers the session's revision.
type barrierCmd struct {
	reply[SetManyResult]
	session string
	now     time.Time
}

func (c *barrierCmd) apply(st *state) {
	s, err := st.session(c.session, c.now)
	if err != nil {
		c.fail(err)
		return
	}
	c.set(SetManyResult{Revision: s.rev}, nil)
}

// encodeProposal appends to buf one proposal, framed so that proposals
// concatenate: its id, the caller's quota (nil: unscoped or the default)
// and its records.
func encodeProposal(buf []byte, id string, quota *Quota, recs [][]byte) []byte {
	body := encoder{}
	body.byte(proposalVersion)
	body.string(id)
	body.bool(quota != nil)
	if quota != nil {
		body.varint(int64(quota.MaxSessions))
		body.varint(int64(quota.MaxVariables))
		body.varint(int64(quota.MaxBytes))
	}
	body.uvarint(uint64(len(recs)))
	for _, r := range recs {
		body.bytes(r)
	}
	e := encoder{buf: buf}
	e.bytes(body.buf)
	return e.buf
}

func decodeProposal(b []byte) (id string, quota *Quota, recs [][]byte, err error) {
	d := &decoder{buf: b}
	if v := d.byte(); d.err == nil && v != proposalVersion {
		return "", nil, nil, fmt.Errorf("%w: proposal version %d (this server reads %d)", errCorrupt, v, proposalVersion)
	}
	id = d.string()
	if d.bool() {
		quota = &Quota{MaxSessions: int(d.varint()), MaxVariables: int(d.varint()), MaxBytes: int(d.varint())}
	}
	recs = make([][]byte, d.length(5))
	for i := range recs {
		recs[i] = d.bytesRef()
	}
	if err := d.finished(); err != nil {
		return "", nil, nil, err
	}
	return id, quota, recs, nil
}
