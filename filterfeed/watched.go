package filterfeed

import (
	"slices"

	"github.com/varwatch/varwatch/engine"
)

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
	merged map[*Member]bool
}

// update merges the started members of ms and reports whether the feed
// may skip events: false while some member has not started (it still
// keeps every event) and once a glob matches everything.
func (u *union) update(ms []*Member) bool {
	if u.merged == nil {
		u.ids, u.merged = map[string]bool{}, map[*Member]bool{}
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
		live := make(map[*Member]bool, len(ms))
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
