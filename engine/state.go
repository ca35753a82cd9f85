package engine

import (
	"container/heap"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
)

// state is everything the engine knows. Owned by the loop goroutine; no
// other goroutine reads or writes it.
type state struct {
	cfg      Config
	sessions map[string]*session
	expiries expiryHeap

	// Per loop cycle: subscriptions with staged events and sessions whose
	// revision moved, both published and reset by publish.
	touched []*Subscription
	dirty   []*session

	found []found // setMany's scratch, zeroed after each use

	histBytes int // sum of every session's history bytes

	counts counts // running totals for Stats (stats.go)

	// scope is the tenant of the command being applied and its quota, nil
	// when the command is unscoped (see WithTenant).
	scope *scope

	// owners is what the sessions of each owner hold, for the tenant
	// quotas (quota.go); an owner with no live session has no entry.
	owners map[string]*usage

	j journaling // records of the cycle, when durable (journal.go)

	repl *replState // set on a replicated engine (replicated_apply.go)
}

func newState(cfg Config) *state {
	return &state{cfg: cfg, sessions: make(map[string]*session), owners: make(map[string]*usage)}
}

// session returns the live session id and records its use. A session whose
// TTL has run out is removed right here, so expiry is exact even between
// timer ticks.
func (st *state) session(id string, now time.Time) (*session, error) {
	// Every live id passed checkSessionID when it was created: one that
	// fails it is a malformed request, not a session that is missing.
	if err := checkSessionID(id); err != nil {
		return nil, err
	}
	s := st.sessions[id]
	if s == nil {
		return nil, errorf(ErrSessionNotFound, "session %q not found", id)
	}
	if st.repl != nil && !st.repl.applying {
		return st.readSession(s, now)
	}
	// Replay and a replicated log expire by record; a watched session is
	// in use (keepalive.go).
	if !now.Before(s.expiresAt) && !st.j.replaying && st.repl == nil && !st.keepsAlive(s) {
		st.removeSession(s, now)
		return nil, errorf(ErrSessionNotFound, "session %q expired at %s", id, s.expiresAt.UTC().Format(time.RFC3339Nano))
	}
	if !st.allows(s) {
		return nil, errorf(ErrPermissionDenied, "session %q belongs to another tenant", id)
	}
	s.touch(now)
	st.noteUse(s)
	return s, nil
}

func (st *state) createSession(req CreateSessionRequest, now time.Time) (SessionInfo, bool, error) {
	if err := checkSessionID(req.ID); err != nil {
		return SessionInfo{}, false, err
	}
	if req.TTL < 0 {
		return SessionInfo{}, false, errorf(ErrInvalidArgument, "session ttl %s is negative", req.TTL)
	}
	s, err := st.session(req.ID, now)
	switch {
	case err == nil:
		return s.info(), false, nil
	case errors.Is(err, ErrPermissionDenied):
		return SessionInfo{}, false, err
	}
	if st.scope != nil {
		req.Owner = st.scope.tenant
	}
	if err := st.checkTenantSessions(now); err != nil {
		return SessionInfo{}, false, err
	}
	meta, err := st.checkMetadata(req.Metadata, func() string { return "the metadata of session " + truncQuote(req.ID) })
	if err != nil {
		return SessionInfo{}, false, err
	}
	if err := st.checkSessionLimit(now); err != nil {
		return SessionInfo{}, false, err
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = st.cfg.SessionTTL
	}
	s = newSession(req, ttl, now)
	st.own(s)
	s.metaBytes = meta.bytes
	st.sessions[s.id] = s
	heap.Push(&st.expiries, expiryEntry{at: s.expiresAt, s: s})
	st.counts.sessionsCreated++
	return s.info(), true, nil
}

func (st *state) listSessions(now time.Time) []SessionInfo {
	st.expireDue(now)
	infos := make([]SessionInfo, 0, len(st.sessions))
	for _, s := range st.sessions {
		if st.allows(s) {
			infos = append(infos, s.info())
		}
	}
	slices.SortFunc(infos, func(a, b SessionInfo) int { return strings.Compare(a.ID, b.ID) })
	return infos
}

// removeSession deletes s; its subscriptions get EventSessionClosed as
// their last event.
func (st *state) removeSession(s *session, now time.Time) {
	st.noteRemoval(s, now)
	s.gone = true
	delete(st.sessions, s.id)
	st.disown(s)
	st.countRemoval(s, now)
	st.forgetHistory(s)
	ev := Event{Type: EventSessionClosed, Revision: s.rev, Time: now, Incarnation: s.incarnation}
	if len(s.subs) > 0 {
		ev.bytes = eventSize(&ev)
		pos := st.emit(s, &ev)
		for sub := range s.subs {
			st.stage(sub, pos, ev.bytes)
			sub.staged.final = ErrSessionClosed
		}
	}
}

// register adds a variable; pre is its constraints and value, checked by
// the caller off the loop, and routes the pattern watches its name was
// matched to there. When routing it here would cost too much, it registers
// nothing and returns the watches to match (route) instead.
func (st *state) register(req RegisterRequest, pre registered, routes map[*Subscription]bool, now time.Time) (SetResult, []*Subscription, error) {
	s, err := st.session(req.Session, now)
	if err != nil {
		return SetResult{}, nil, err
	}
	if err := checkName(req.Name); err != nil {
		return SetResult{}, nil, err
	}
	if !req.Type.Valid() {
		return SetResult{}, nil, errorf(ErrInvalidArgument, "variable type is missing or unknown (%d)", int(req.Type))
	}
	if old := s.names[req.Name]; old != nil {
		return SetResult{}, nil, errorf(ErrAlreadyExists, "variable %q already exists in session %q (id %s)", req.Name, s.id, old.cur.ID)
	}
	if err := st.checkVariableLimit(s); err != nil {
		return SetResult{}, nil, err
	}
	if err := st.checkValue(req.Value); err != nil {
		return SetResult{}, nil, err
	}
	if pre.err != nil {
		return SetResult{}, nil, pre.err
	}
	charge := registerCharge(req)
	if err := st.checkTenantGrowth(s, 1, charge, now); err != nil {
		return SetResult{}, nil, err
	}
	cc := pre.cc
	if err := st.reportMetadata(pre.metaLim, pre.metaErr); err != nil {
		return SetResult{}, nil, err
	}
	meta := pre.meta
	if err := st.checkSessionMetadata(s, meta.bytes); err != nil {
		return SetResult{}, nil, err
	}
	// The id is not drawn yet: 20 bytes hold any.
	sized := &Variable{ID: "00000000000000000000", Name: req.Name, Value: req.Value, meta: meta}
	if n := updateWire(sized, cc.wire, Value{}, "", metaStats{}); over(n, st.maxUpdate()) {
		return SetResult{}, nil, st.refuseMessage("the registration of variable %s would take about %d bytes encoded", truncQuote(req.Name), n)
	}

	if routes == nil && s.routeCost(req.Name) > maxLoopGlobSteps {
		return SetResult{}, s.livePatternSubs(), nil
	}

	rev := st.nextRevision(s)
	v := st.addVariable(s, &Variable{Name: req.Name, Type: req.Type, Value: req.Value,
		Metadata: pre.metadata, meta: meta}, cc, charge, routes, rev, now)
	return SetResult{Variable: v, Revision: rev}, nil, nil
}

// addVariable adds v, which holds the caller's name, type, value,
// constraints and metadata, to s as a new variable at rev, and stages its
// EventVariableRegistered for the pattern watches of s its name matches
// (as routes says, see routed). It fills in the rest of v and returns it.
func (st *state) addVariable(s *session, v *Variable, cc *compiledConstraints, charge int, routes map[*Subscription]bool, rev int64, now time.Time) *Variable {
	s.nextID++
	v.ID = strconv.FormatInt(s.nextID, 10)
	v.Constraints = &cc.Constraints // compiled: normalized, and immutable
	v.Version, v.CreateRevision, v.ModRevision = 1, rev, rev
	v.CreatedAt, v.UpdatedAt = now, now
	s.metaBytes += v.meta.bytes
	slot := newSlot(v, cc, s.nextID)
	s.vars[v.ID] = slot
	s.names[v.Name] = slot
	st.counts.variables++
	s.usage.variables++
	s.recharge(slot, charge)

	ev := Event{Type: EventVariableRegistered, Revision: rev, Variable: v, Time: now}
	ev.bytes = eventSize(&ev)
	st.record(s, &ev)
	pos := int64(-1)
	for _, sub := range s.patternSubs.subs {
		if !sub.removed && !sub.ended.Load() && routed(routes, sub, v.Name) {
			slot.watchers.add(sub)
			sub.slots = append(sub.slots, slot)
			if n := len(sub.slots); n >= 64 && n&(n-1) == 0 {
				// Now and then, forget the variables deleted since, so a
				// long watch of a churning session stays its size.
				sub.slots = slices.DeleteFunc(sub.slots, func(sl *varSlot) bool { return s.vars[sl.cur.ID] != sl })
			}
			if pos < 0 {
				pos = st.emit(s, &ev)
			}
			st.stage(sub, pos, ev.bytes)
		}
	}
	return v
}

// routed reports whether a registration of name goes to sub: as its
// caller matched it, or, for a watch started since, matched here.
func routed(routes map[*Subscription]bool, sub *Subscription, name string) bool {
	if m, ok := routes[sub]; ok {
		return m
	}
	return sub.glob.Match(name)
}

func (st *state) getMany(session string, idents []string, now time.Time) (GetManyResult, error) {
	s, err := st.session(session, now)
	if err != nil {
		return GetManyResult{}, err
	}
	res := GetManyResult{Revision: s.rev}
	for _, ident := range idents {
		if err := checkIdent(ident); err != nil {
			return GetManyResult{}, err
		}
	}
	for _, ident := range idents {
		if slot := s.lookup(ident); slot != nil {
			res.Found = append(res.Found, slot.cur)
		} else {
			res.Missing = append(res.Missing, ident)
		}
	}
	return res, nil
}

// list returns every variable of the session, unsorted: the caller
// matches globErr's pattern and sorts, off the loop (names.go).
func (st *state) list(session string, globErr error, now time.Time) (ListResult, error) {
	s, err := st.session(session, now)
	if err != nil {
		return ListResult{}, err
	}
	if globErr != nil {
		return ListResult{}, globErr
	}
	res := ListResult{Revision: s.rev, Variables: make([]*Variable, 0, len(s.vars))}
	for _, slot := range s.vars {
		res.Variables = append(res.Variables, slot.cur)
	}
	return res, nil
}

// setMany applies req, with pre the checks its caller made off the loop.
// When a set needs a verdict pre does not hold, nothing applies: needs
// says what the caller must check before it sends req again.
func (st *state) setMany(req SetManyRequest, pre prechecks, now time.Time) (_ SetManyResult, needs []needCheck, _ error) {
	s, err := st.session(req.Session, now)
	if err != nil {
		return SetManyResult{}, nil, err
	}
	if len(req.Sets) == 0 {
		return SetManyResult{}, nil, errorf(ErrInvalidArgument, "no updates given")
	}
	found := st.foundFor(len(req.Sets))
	defer clearFound(found) // the slots are not the scratch's to keep alive
	if needs = s.needChecks(req.Sets, pre, found); len(needs) > 0 {
		return SetManyResult{}, needs, nil
	}
	items := make([]SetItemResult, len(req.Sets))

	// The answer holds every variable written: it must fit in one message
	// too, so each set's share is counted before it applies.
	answer := 0
	budget := maxLoopMergeEntries // for merges the caller could not prepare
	if !req.Atomic {
		for i := range req.Sets {
			set := &req.Sets[i]
			var plan setPlan
			var err error
			creates := s.creates(set)
			if creates {
				plan, err = st.checkCreate(s, set, pre.at(i), 0, 0)
			} else {
				plan, err = st.checkSet(s, set, pre.at(i), found[i], 0, &budget)
			}
			if err == nil && over(answer+plan.answer, st.maxUpdate()) {
				err = st.refuseMessage("the answer would take about %d bytes encoded with update %d", answer+plan.answer, i)
			}
			if err == nil {
				err = st.checkTenantGrowth(s, b2i(creates), plan.growth(set), now)
			}
			if err != nil {
				items[i].Err = err
				continue
			}
			answer += plan.answer
			if creates {
				items[i].SetResult = st.applyCreate(s, &plan, set, pre.at(i).routes, st.nextRevision(s), now)
			} else {
				items[i].SetResult = st.applySet(s, &plan, set, st.nextRevision(s), now)
			}
		}
		return SetManyResult{Items: items, Revision: s.rev}, nil, nil
	}

	// Atomic: check everything before changing anything.
	var one [1]setPlan // a single set's plan (every blocking Set) needs no allocation
	plans := one[:]
	if len(req.Sets) > 1 {
		plans = make([]setPlan, len(req.Sets))
	}
	var seen map[*varSlot]struct{} // for many sets; a few are searched
	if len(req.Sets) > 16 {
		seen = make(map[*varSlot]struct{}, len(req.Sets))
	}
	pending := 0                // metadata bytes the sets checked so far add to the session
	growth := 0                 // of the tenant's bytes, over all the sets
	var created map[string]bool // names of the variables the sets create
	for i := range req.Sets {
		set := &req.Sets[i]
		var plan setPlan
		var err error
		switch {
		case created[set.Variable]:
			return SetManyResult{}, nil, errorf(ErrInvalidArgument, "update %d: variable %q is set twice in one atomic call", i, set.Variable)
		case s.creates(set):
			plan, err = st.checkCreate(s, set, pre.at(i), pending, len(created))
		default:
			plan, err = st.checkSet(s, set, pre.at(i), found[i], pending, &budget)
		}
		if err == nil && over(answer+plan.answer, st.maxUpdate()) {
			err = st.refuseMessage("the answer would take about %d bytes encoded with update %d", answer+plan.answer, i)
		}
		if err != nil {
			if len(req.Sets) > 1 {
				err = wrapItem(i, set.Variable, err)
			}
			return SetManyResult{}, nil, err
		}
		if plan.create != nil {
			if created == nil {
				created = make(map[string]bool)
			}
			created[set.Variable] = true
			pending += plan.meta.bytes
			answer += plan.answer
			growth += plan.growth(set)
			plans[i] = plan
			continue
		}
		_, dup := seen[plan.slot]
		if seen == nil {
			dup = slices.ContainsFunc(plans[:i], func(p setPlan) bool { return p.slot == plan.slot })
		}
		if dup {
			return SetManyResult{}, nil, errorf(ErrInvalidArgument, "update %d: variable %q is set twice in one atomic call", i, set.Variable)
		}
		if seen != nil {
			seen[plan.slot] = struct{}{}
		}
		pending += plan.meta.bytes - plan.slot.cur.meta.bytes
		answer += plan.answer
		growth += setCharge(plan.slot, set) - plan.slot.bytes
		plans[i] = plan
	}
	if err := st.checkTenantGrowth(s, len(created), growth, now); err != nil {
		return SetManyResult{}, nil, err
	}
	rev := st.nextRevision(s)
	for i := range req.Sets {
		if set := &req.Sets[i]; plans[i].create != nil {
			items[i].SetResult = st.applyCreate(s, &plans[i], set, pre.at(i).routes, rev, now)
		} else {
			items[i].SetResult = st.applySet(s, &plans[i], set, rev, now)
		}
	}
	return SetManyResult{Items: items, Revision: rev}, nil, nil
}

// needChecks lists what the caller must do off the loop before the loop
// can decide the sets: check values against their variables' costly
// constraints, and, when merging the metadata here would cost more than
// maxLoopMergeEntries, merge it. A set that fails a cheap check first
// needs none. It notes in found, one per set, what it looked up and
// checked, so that checkSet need not do it again.
func (s *session) needChecks(sets []SetRequest, pre prechecks, found []found) []needCheck {
	var needs []needCheck
	var merges []needCheck
	cost := 0
	for i := range sets {
		set := &sets[i]
		slot := s.lookup(set.Variable)
		if slot == nil {
			if n, need := s.routeNeed(i, set, pre.at(i)); need {
				needs = append(needs, n)
			}
			continue
		}
		verdict, need := slot.cc.checkOnLoop(slot.cur.Type, set.Value, pre.at(i))
		if need {
			needs = append(needs, needCheck{i: i, cc: slot.cc})
		}
		found[i].slot, found[i].verdict = slot, verdict
		if c := mergeCost(slot.cur, set.Metadata); c > 0 && pre.at(i).base != slot.cur {
			cost += c
			merges = append(merges, needCheck{i: i, base: slot.cur})
		}
	}
	if cost <= maxLoopMergeEntries {
		return needs
	}
	for _, m := range merges { // one need per set: join them
		j := slices.IndexFunc(needs, func(n needCheck) bool { return n.i == m.i })
		if j < 0 {
			needs = append(needs, m)
		} else {
			needs[j].base = m.base
		}
	}
	return needs
}

// found is what needChecks learnt of one set: its variable, and the
// verdict of the checks the loop makes on its value. Both hold for the
// rest of the call: a call never deletes a variable, and an earlier set of
// it changes neither the variable's type nor its constraints. slot is nil
// when the variable did not exist then (an earlier set may create it).
type found struct {
	slot    *varSlot
	verdict error
}

// clearFound zeroes fs, writing only what is set: clear would cost,
// while the collector marks, a barrier for every pointer, nil or not.
func clearFound(fs []found) {
	for i := range fs {
		if f := &fs[i]; f.slot != nil || f.verdict != nil {
			*f = found{}
		}
	}
}

// foundFor returns the loop's scratch for the found of n sets, zeroed.
func (st *state) foundFor(n int) []found {
	if cap(st.found) < n {
		st.found = make([]found, n)
	}
	return st.found[:n]
}

// checkSet reports why set cannot apply, or returns its variable. pre is
// what its caller checked off the loop, f what needChecks found.
func (s *session) checkSet(set *SetRequest, pre *checked, f found) (*varSlot, error) {
	if err := checkIdent(set.Variable); err != nil {
		return nil, err
	}
	slot, verdict := f.slot, f.verdict
	if slot == nil { // created by an earlier set of the call, if at all
		if slot = s.lookup(set.Variable); slot == nil {
			return nil, errorf(ErrVariableNotFound, "no variable %q in session %q", set.Variable, s.id)
		}
		var need bool
		if verdict, need = slot.cc.checkOnLoop(slot.cur.Type, set.Value, pre); need {
			panic("engine: a set reached the loop without the verdict needChecks asked for")
		}
	}
	cur := slot.cur
	if set.CreateType != 0 && set.CreateType != cur.Type {
		return nil, errorf(ErrInvalidArgument, "variable %q is %s, not %s", cur.Name, cur.Type, set.CreateType)
	}
	if verdict != nil {
		return nil, verdict
	}
	if set.HasExpectedVersion && set.ExpectedVersion != cur.Version {
		return nil, &VersionConflictError{Variable: cur.Name, Expected: set.ExpectedVersion, Current: cur.Version}
	}
	return slot, nil
}

// applySet writes a checked set at rev and stages its event.
func (st *state) applySet(s *session, plan *setPlan, set *SetRequest, rev int64, now time.Time) SetResult {
	slot := plan.slot
	charge := setCharge(slot, set) // of the variable as it was: before slot.cur moves
	old := slot.cur
	meta := set.Metadata // the caller's copy (precheck): the engine's now
	metadata := old.Metadata
	switch {
	case len(meta) == 0:
	case plan.merged != nil:
		metadata = plan.merged
	default:
		metadata = mergeMetadata(old.Metadata, meta)
	}
	// The new version is built whole rather than copied from old and then
	// changed, which wrote the value, source and times twice (and, while
	// the collector marks, paid its write barrier on the copy). Every
	// field is named: TestSetCarriesEveryFieldOver fails if one is added
	// and not carried over.
	v := &Variable{ID: old.ID, Name: old.Name, Type: old.Type,
		Constraints: old.Constraints, Metadata: metadata,
		Version: old.Version + 1, CreateRevision: old.CreateRevision, ModRevision: rev,
		CreatedAt: old.CreatedAt, UpdatedAt: now, Source: set.Source, meta: plan.meta}
	v.Value.assign(&set.Value)
	st.counts.sets++
	s.metaBytes += plan.meta.bytes - old.meta.bytes
	n := slot.setMem(plan, v)
	slot.cur, slot.curWire, slot.curMem = v, plan.wire, plan.mem
	s.recharge(slot, charge)

	st.recordChange(s, rev, n, v, &old.Value, meta)
	if slot.watchers.live() > 0 { // the Event is only for them
		ev := Event{Type: EventValueChange, Revision: rev, Variable: v, OldValue: old.Value,
			Source: set.Source, Metadata: meta, Time: now, bytes: n}
		if slot.watchers.live() > 1 {
			ev.Memo = new(Memo)
		}
		st.route(s, slot, &ev)
	}
	return SetResult{Variable: v, Revision: rev}
}

// setMem is eventSizeWith of the change of slot's variable to v, as
// planned, from what the slot keeps; slot.cur is still the old version.
func (slot *varSlot) setMem(plan *setPlan, v *Variable) int {
	return 160 + slot.curMem + len(v.Source) + plan.setMeta.mem() +
		slot.mem + len(v.Source) + plan.mem + v.meta.mem()
}

func (st *state) delete(session, ident string, now time.Time) (int64, error) {
	s, err := st.session(session, now)
	if err != nil {
		return 0, err
	}
	if err := checkIdent(ident); err != nil {
		return 0, err
	}
	slot := s.lookup(ident)
	if slot == nil {
		return 0, errorf(ErrVariableNotFound, "no variable %q in session %q", ident, s.id)
	}
	rev := st.nextRevision(s)
	delete(s.vars, slot.cur.ID)
	delete(s.names, slot.cur.Name)
	s.metaBytes -= slot.cur.meta.bytes
	st.counts.variables--
	s.usage.variables--
	s.recharge(slot, 0)
	ev := Event{Type: EventVariableDeleted, Revision: rev, Variable: slot.cur, Time: now}
	ev.bytes = eventSize(&ev)
	st.record(s, &ev)
	st.route(s, slot, &ev)
	return rev, nil
}

// route publishes ev, a change or deletion of slot's variable, to its
// watchers.
func (st *state) route(s *session, slot *varSlot, ev *Event) {
	if slot.watchers.live() == 0 {
		return
	}
	pos := st.emit(s, ev)
	for _, sub := range slot.watchers.subs {
		if !sub.removed {
			st.stage(sub, pos, ev.bytes)
		}
	}
}

func (st *state) nextRevision(s *session) int64 {
	if !s.dirty {
		s.dirty = true
		st.dirty = append(st.dirty, s)
	}
	s.rev++
	st.counts.revisions++
	return s.rev
}

func (st *state) expireDue(now time.Time) {
	if st.repl != nil {
		st.proposeExpiries(now)
		return
	}
	for len(st.expiries) > 0 && !now.Before(st.expiries[0].at) {
		e := heap.Pop(&st.expiries).(expiryEntry)
		switch {
		case e.s.gone:
		case !now.Before(e.s.expiresAt) && st.keepsAlive(e.s):
			st.keepAlive(e.s, now) // watched: use (keepalive.go)
			heap.Push(&st.expiries, expiryEntry{at: e.s.expiresAt, s: e.s})
		case !now.Before(e.s.expiresAt):
			st.removeSession(e.s, now)
		default: // used since: wait for the new deadline
			heap.Push(&st.expiries, expiryEntry{at: e.s.expiresAt, s: e.s})
		}
	}
}

// nextExpiry returns when the loop should next look for expired sessions.
func (st *state) nextExpiry() (time.Time, bool) {
	if len(st.expiries) == 0 {
		return time.Time{}, false
	}
	return st.expiries[0].at, true
}

// expiryEntry is a lower bound on when s may expire. Sessions refresh their
// deadline without touching the heap; a stale entry is re-pushed when it
// comes up (see expireDue).
type expiryEntry struct {
	at time.Time
	s  *session
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = expiryEntry{}
	*h = old[:len(old)-1]
	return e
}
