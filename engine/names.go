package engine

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Glob matching over a session's names runs off the loop, like the costly
// value checks (offloop.go): one match costs up to the pattern's length
// times the name's, and a session holds up to MaxVariablesPerSession names
// (a 1 KiB glob of classes over 10,000 names of 250 bytes took 1.1 s).
//
//   - List: the loop hands back every variable of the session, unsorted
//     (pointers: variables are immutable), and the caller filters and
//     sorts them.
//   - A pattern watch takes two trips. The loop first hands back the names
//     (and, for a resume, the names its replay will cover); the caller
//     matches them. The watch command then carries the matches: the loop
//     looks up the matching ids, and matches on the loop only the names
//     registered in between (varSlot.seq after the first trip's), as
//     every registration matches the session's pattern watches anyway.
//     A variable's name never changes and ids are never reused, so a match
//     made by id stays right.
//
//   - A registration is routed to the session's pattern watches in the
//     step that applies it. When matching its name against all of them
//     would cost more than maxLoopGlobSteps, the loop hands the watches
//     back instead of registering; the caller matches and sends the
//     registration again with the routes, and the loop matches only the
//     watches started in between.

// nameEntry is one variable's id and name, as the loop handed them out.
type nameEntry struct{ id, name string }

// namesResult is the first trip of a pattern watch.
type namesResult struct {
	names []nameEntry
	seq   int64 // the session's last variable id when they were read
}

type namesCmd struct {
	reply[namesResult]
	session string
	resume  bool
	start   int64
	now     time.Time
}

func (c *namesCmd) apply(st *state) { c.set(st.names(c.session, c.resume, c.start, c.now)) }

// names lists the session's variables and, for a resume from start, the
// variables of the history after start (with repeats: the caller
// dedupes). A bad start is left for the watch to report.
func (st *state) names(session string, resume bool, start int64, now time.Time) (namesResult, error) {
	s, err := st.session(session, now)
	if err != nil {
		return namesResult{}, err
	}
	res := namesResult{names: make([]nameEntry, 0, len(s.vars)), seq: s.nextID}
	for _, slot := range s.vars {
		res.names = append(res.names, nameEntry{slot.cur.ID, slot.cur.Name})
	}
	if resume && start >= 0 && start <= s.rev {
		entries, _ := s.hist.since(start)
		for entry := range entries {
			entry.events(func(h *histEvent) {
				if v := h.variable(); v != nil {
					res.names = append(res.names, nameEntry{v.ID, v.Name})
				}
			})
		}
	}
	return res, nil
}

// globMatches is what the caller of a pattern watch matched off the loop.
type globMatches struct {
	seq     int64           // namesResult.seq
	sorted  []string        // ids of the matching variables, by name
	matched map[string]bool // every id it matched, and whether it matches
}

// matchNames matches res against g, off the loop.
func matchNames(g Glob, res namesResult) *globMatches {
	m := &globMatches{seq: res.seq, matched: make(map[string]bool, len(res.names))}
	var hits []nameEntry
	for _, n := range res.names {
		if _, done := m.matched[n.id]; done {
			continue
		}
		ok := g.Match(n.name)
		m.matched[n.id] = ok
		if ok {
			hits = append(hits, n)
		}
	}
	slices.SortFunc(hits, func(a, b nameEntry) int { return strings.Compare(a.name, b.name) })
	m.sorted = make([]string, len(hits))
	for i, n := range hits {
		m.sorted[i] = n.id
	}
	return m
}

// matchingSlots returns the variables of s whose names match g, by name,
// from the matches made off the loop: the loop itself matches only the
// variables registered since.
func (s *session) matchingSlots(g *Glob, pre *globMatches) []*varSlot {
	slots := make([]*varSlot, 0, len(pre.sorted))
	for _, id := range pre.sorted {
		if slot := s.vars[id]; slot != nil { // else deleted since
			slots = append(slots, slot)
		}
	}
	if s.nextID == pre.seq {
		return slots
	}
	var extra []*varSlot
	for _, slot := range s.vars {
		if slot.seq > pre.seq && g.Match(slot.cur.Name) {
			extra = append(extra, slot)
		}
	}
	byName := func(a, b *varSlot) int { return strings.Compare(a.cur.Name, b.cur.Name) }
	slices.SortFunc(extra, byName)
	merged := make([]*varSlot, 0, len(slots)+len(extra))
	for len(slots) > 0 && len(extra) > 0 {
		if byName(slots[0], extra[0]) < 0 {
			merged, slots = append(merged, slots[0]), slots[1:]
		} else {
			merged, extra = append(merged, extra[0]), extra[1:]
		}
	}
	return append(append(merged, slots...), extra...)
}

// matches reports whether v's name matches g, from pre when it matched v.
func (pre *globMatches) matches(g *Glob, v *Variable) bool {
	if m, ok := pre.matched[v.ID]; ok {
		return m
	}
	return g.Match(v.Name)
}

// watchPattern is the glob a watch request stands for ("" for none).
func watchPattern(req WatchRequest) string {
	if len(req.Variables) == 0 && req.Pattern == "" {
		return "*"
	}
	return req.Pattern
}

// watch runs a watch, first matching its pattern off the loop.
func (e *Engine) watch(ctx context.Context, req WatchRequest) (*Subscription, error) {
	var pre *globMatches
	if pattern := watchPattern(req); pattern != "" {
		if g, err := CompileGlob(pattern); err == nil { // else the loop reports it, in its turn
			c := &namesCmd{session: req.Session, resume: req.Resume, start: req.StartRevision, now: e.now()}
			res, err := run(ctx, e, c, &c.reply)
			if err != nil {
				return nil, err
			}
			pre = matchNames(g, res)
		}
	}
	c := &watchCmd{req: req, pre: pre, now: e.now(), engine: e}
	return run(ctx, e, c, &c.reply)
}

// list runs a listCmd, then filters and sorts what it returns off the
// loop.
func (e *Engine) list(ctx context.Context, session, pattern string) (ListResult, error) {
	var glob Glob
	var globErr error
	if pattern != "" {
		glob, globErr = CompileGlob(pattern)
	}
	c := &listCmd{session: session, globErr: globErr, now: e.now()}
	res, err := run(ctx, e, c, &c.reply)
	if err != nil {
		return ListResult{}, err
	}
	if pattern != "" {
		res.Variables = slices.DeleteFunc(res.Variables, func(v *Variable) bool { return !glob.Match(v.Name) })
	}
	slices.SortFunc(res.Variables, func(a, b *Variable) int { return strings.Compare(a.Name, b.Name) })
	return res, nil
}

// maxLoopGlobSteps is the glob matching one registration may do on the
// loop (about 20 us): past it, its caller routes it (see routeNames).
const maxLoopGlobSteps = 1 << 16

// routeCost bounds the steps of matching name against every pattern
// watch of s.
func (s *session) routeCost(name string) int {
	n := 0
	for _, sub := range s.patternSubs.subs {
		if !sub.removed {
			n += sub.glob.cost(name)
		}
	}
	return n
}

// livePatternSubs returns the pattern watches of s, for the caller to route a
// registration to.
func (s *session) livePatternSubs() []*Subscription {
	subs := make([]*Subscription, 0, s.patternSubs.live())
	for _, sub := range s.patternSubs.subs {
		if !sub.removed {
			subs = append(subs, sub)
		}
	}
	return subs
}

// routeName matches name against each sub's glob, off the loop. A
// subscription's glob never changes once it is made, and it was made
// before the loop handed sub out, so reading it here is safe.
func routeName(name string, subs []*Subscription) map[*Subscription]bool {
	routes := make(map[*Subscription]bool, len(subs))
	for _, sub := range subs {
		routes[sub] = sub.glob.Match(name)
	}
	return routes
}

// register runs a registerCmd, routing it to the session's pattern
// watches off the loop when the loop asks.
func (e *Engine) register(ctx context.Context, req RegisterRequest) (SetResult, error) {
	if e.repl != nil {
		return e.replicatedRegister(ctx, req)
	}
	pre := checkRegistration(req, &e.cfg)
	var routes map[*Subscription]bool
	for {
		c := &registerCmd{req: req, pre: pre, routes: routes, now: e.now()}
		res, err := run(ctx, e, c, &c.reply)
		if err != nil || c.route == nil {
			return res, err
		}
		routes = routeName(req.Name, c.route)
	}
}
