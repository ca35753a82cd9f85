package engine

import (
	"container/heap"
	"strconv"
	"time"
)

// Time on a replicated engine is decided once, by the log. A node's clock
// only makes it propose: a TTL refresh when a read, a watch or the end of
// a session's last watch would move a deadline, and an expiry when a
// deadline has passed. What applies is the record, at one point of the
// log, on every node:
//
//   - A refresh (recRefresh) touches the session at the proposer's time,
//     as a heartbeat does. Reads propose one only when they would move the
//     deadline by more than TTL/touchSlack (as the journal does), and at
//     most once per TTL/touchSlack per session, so reads stay reads.
//   - An expiry (recExpire) names the session's incarnation and the
//     deadline the proposer found past, and applies only while both are
//     still the session's: a refresh that landed first makes it a no-op.
//     Every node whose clock passes the deadline proposes the same expiry,
//     with the same id, so the log (and the engine's dedupe window) keeps
//     one.
//   - Watches are local to a node, so a watched session is kept alive by
//     the node that holds its watches: it proposes a refresh once half the
//     TTL is gone, well before any node's clock says it expired.
//
// # Notes
//
// A node that holds watches and cannot reach the log for half a TTL lets
// its session expire by another node's proposal; its watches then end with
// EventSessionClosed, as on a single node with ExpireWatchedSessions.

// proposeRetry bounds how long a node waits before proposing again a
// refresh or expiry that did not land (the log was unreachable). A
// package variable so that tests can shrink it.
var proposeRetry = time.Second

// readSession is state.session for a read on a replicated engine: it
// changes nothing, and proposes the TTL refresh the read would make.
func (st *state) readSession(s *session, now time.Time) (*session, error) {
	if !st.allows(s) {
		return nil, errorf(ErrPermissionDenied, "session %q belongs to another tenant", s.id)
	}
	st.wantRefresh(s, now, false)
	// It may be watched from now on: look again at half its TTL.
	st.schedule(s, s.expiresAt.Add(-s.ttl/2))
	return s, nil
}

// schedule makes proposeExpiries look at s at the latest at at. A
// replicated engine keeps one entry per session in the expiry heap (plus
// the one its creation pushed): without that, every read after a refresh
// would add an entry that re-pushes itself for as long as the session
// lives.
func (st *state) schedule(s *session, at time.Time) {
	if cur, ok := st.repl.look[s]; ok && !at.Before(cur) {
		return // an earlier look will schedule the next one
	}
	st.repl.look[s] = at
	heap.Push(&st.expiries, expiryEntry{at: at, s: s})
}

// wantRefresh proposes a refresh of s at now if it would move its deadline
// by more than the slack reads get (or at all, when exact), unless one was
// proposed recently.
func (st *state) wantRefresh(s *session, now time.Time, exact bool) {
	moves := now.Add(s.ttl).Sub(s.expiresAt)
	if moves <= 0 || (!exact && moves <= s.ttl/touchSlack) {
		return
	}
	if last, ok := st.repl.asked[s]; ok && now.Sub(last) < min(s.ttl/touchSlack, proposeRetry) {
		return
	}
	st.repl.asked[s] = now
	e := &st.repl.enc
	e.beginRecord(recRefresh, now, nil)
	e.string(s.id)
	st.propose("", e.sealRecord())
}

// propose queues a record this node proposes itself; id "" gets one of
// this node's.
func (st *state) propose(id string, rec []byte) {
	st.repl.outbox = append(st.repl.outbox, outgoing{id: id, msg: append([]byte(nil), rec...)})
}

// proposeExpiries is expireDue on a replicated engine: it proposes the
// expiry of every session past its deadline, and a refresh of every
// session this node keeps alive that is half through its TTL.
func (st *state) proposeExpiries(now time.Time) {
	for len(st.expiries) > 0 && !now.Before(st.expiries[0].at) {
		en := heap.Pop(&st.expiries).(expiryEntry)
		s := en.s
		if next, ok := st.repl.look[s]; ok {
			if !en.at.Equal(next) {
				continue // superseded by an earlier look
			}
			delete(st.repl.look, s)
		}
		retry := now.Add(min(s.ttl/touchSlack, proposeRetry))
		switch {
		case s.gone:
			delete(st.repl.asked, s)
			continue
		case st.keepsAlive(s) && !now.Before(s.expiresAt.Add(-s.ttl/2)):
			st.wantRefresh(s, now, true)
			st.schedule(s, retry)
		case !now.Before(s.expiresAt):
			e := &st.repl.enc
			e.beginRecord(recExpire, now, nil)
			e.string(s.id)
			e.string(s.incarnation)
			e.varint(s.expiresAt.UnixNano())
			st.propose(expiryID(s), e.sealRecord())
			st.schedule(s, retry)
		default: // moved since: look again at the new deadline
			at := s.expiresAt
			if st.keepsAlive(s) {
				at = at.Add(-s.ttl / 2)
			}
			st.schedule(s, at)
		}
	}
}

// expiryID is the proposal id of s's expiry at its deadline: the same on
// every node.
func expiryID(s *session) string {
	return "x:" + s.id + ":" + s.incarnation + ":" + strconv.FormatInt(s.expiresAt.UnixNano(), 36)
}

// flushOutbox hands the loop's own proposals to the log. Nobody waits for
// them: one that does not land is proposed again when its reason comes up
// again (a read, the expiry timer).
func (e *Engine) flushOutbox(st *state) {
	r := e.repl
	for i, o := range st.repl.outbox {
		id := o.id
		if id == "" {
			id = r.node + "-" + strconv.FormatUint(r.next.Add(1), 36)
		}
		r.log.Propose(id, encodeProposal(nil, id, nil, [][]byte{o.msg}), func(uint64, error) {})
		st.repl.outbox[i] = outgoing{}
	}
	st.repl.outbox = st.repl.outbox[:0]
}
