package engine

import "time"

// A watch is use: a session with live subscriptions does not expire by its
// TTL, and its TTL starts over when its last subscription ends, so that it
// expires one TTL after the last watch ended (unless used again).
// Config.ExpireWatchedSessions turns this off: then a watched session
// expires like any other and its watches end with EventSessionClosed.
//
// The session's deadline is not suspended but pushed: when a watched
// session comes due (in expireDue, or a command finds it past its
// deadline), it is touched instead of removed, its TTL starting over at
// that instant. That keeps one mechanism for deadlines (the expiry heap,
// and SessionInfo.ExpiresAt is always a real deadline) and makes a
// watched session cost one touch per TTL, not one per event.
//
// # Journal
//
// Subscriptions are not journaled (a restart ends every watch), so what a
// keep-alive decided is: each push and each re-arm at the last watch's end
// is a recTouch record of its effect, replayed by the same session.touch
// at the same instant, like the touches of reads. A replay has no
// subscriptions and expires sessions only by their journaled removals, so
// it makes no keep-alive decision of its own: the replayed deadlines are
// the live ones. Pushes move a deadline by a whole TTL and are always
// journaled; a re-arm that moves it by no more than TTL/touchSlack is not,
// as with reads. A clean shutdown ends every watch first, so the final
// snapshot holds each watched session with a full TTL from the shutdown;
// after a crash, a session watched until then has at least what its last
// push gave it.

// keepsAlive reports whether s is watched and watches keep it alive.
func (st *state) keepsAlive(s *session) bool {
	return !st.cfg.ExpireWatchedSessions && len(s.subs) > 0
}

// keepAlive starts s's TTL over at now, as use does, and journals the new
// deadline if it moved by more than the slack reads get.
func (st *state) keepAlive(s *session, now time.Time) {
	s.touch(now)
	if s.expiresAt.Sub(s.journaledExpiry) > s.ttl/touchSlack {
		st.journalTouch(s)
	}
}

// lastWatchEnded is called when s's last subscription is gone, at now:
// its TTL starts over then.
func (st *state) lastWatchEnded(s *session, now time.Time) {
	if s.gone || st.cfg.ExpireWatchedSessions {
		return
	}
	if st.repl != nil {
		st.wantRefresh(s, now, false)
		return
	}
	st.keepAlive(s, now)
}
