package engine

import (
	"container/heap"
	"errors"
	"maps"
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

	histBytes int // sum of every session's history bytes

	counts counts // running totals for Stats (stats.go)

	// scope is the tenant of the command being applied, nil when the
	// command is unscoped (see WithTenant).
	scope *string
}

func newState(cfg Config) *state {
	return &state{cfg: cfg, sessions: make(map[string]*session)}
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
	if !now.Before(s.expiresAt) {
		st.removeSession(s, now)
		return nil, errorf(ErrSessionNotFound, "session %q expired at %s", id, s.expiresAt.UTC().Format(time.RFC3339Nano))
	}
	if !st.allows(s) {
		return nil, errorf(ErrPermissionDenied, "session %q belongs to another tenant", id)
	}
	s.touch(now)
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
		req.Owner = *st.scope
	}
	if err := st.checkSessionLimit(now); err != nil {
		return SessionInfo{}, false, err
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = st.cfg.SessionTTL
	}
	s = newSession(req, ttl, now)
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
	s.gone = true
	delete(st.sessions, s.id)
	st.countRemoval(s, now)
	st.forgetHistory(s)
	ev := Event{Type: EventSessionClosed, Revision: s.rev, Time: now}
	for sub := range s.subs {
		st.stage(sub, ev)
		sub.final = ErrSessionClosed
	}
}

func (st *state) register(req RegisterRequest, now time.Time) (SetResult, error) {
	s, err := st.session(req.Session, now)
	if err != nil {
		return SetResult{}, err
	}
	if err := checkName(req.Name); err != nil {
		return SetResult{}, err
	}
	if !req.Type.Valid() {
		return SetResult{}, errorf(ErrInvalidArgument, "variable type is missing or unknown (%d)", int(req.Type))
	}
	if old := s.names[req.Name]; old != nil {
		return SetResult{}, errorf(ErrAlreadyExists, "variable %q already exists in session %q (id %s)", req.Name, s.id, old.cur.ID)
	}
	if err := st.checkVariableLimit(s); err != nil {
		return SetResult{}, err
	}
	if err := st.checkValue(req.Value); err != nil {
		return SetResult{}, err
	}
	cc, err := compileConstraints(req.Type, req.Constraints)
	if err != nil {
		return SetResult{}, err
	}
	if err := cc.check(req.Type, req.Value); err != nil {
		return SetResult{}, err
	}

	s.nextID++
	rev := st.nextRevision(s)
	v := &Variable{
		ID:             strconv.FormatInt(s.nextID, 10),
		Name:           req.Name,
		Type:           req.Type,
		Value:          req.Value,
		Constraints:    cc.Constraints,
		Metadata:       maps.Clone(req.Metadata),
		Version:        1,
		CreateRevision: rev,
		ModRevision:    rev,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
	slot := &varSlot{cur: v, cc: cc}
	s.vars[v.ID] = slot
	s.names[v.Name] = slot
	st.counts.variables++

	ev := Event{Type: EventVariableRegistered, Revision: rev, Variable: v, Time: now}
	st.record(s, ev)
	for _, sub := range s.patternSubs.subs {
		if !sub.removed && !sub.ended.Load() && sub.glob.Match(v.Name) {
			slot.watchers.add(sub)
			sub.ids = append(sub.ids, v.ID)
			st.stage(sub, ev)
		}
	}
	return SetResult{Variable: v, Revision: rev}, nil
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

func (st *state) list(session, pattern string, now time.Time) (ListResult, error) {
	s, err := st.session(session, now)
	if err != nil {
		return ListResult{}, err
	}
	var glob Glob
	if pattern != "" {
		if glob, err = CompileGlob(pattern); err != nil {
			return ListResult{}, err
		}
	}
	res := ListResult{Revision: s.rev, Variables: []*Variable{}}
	for _, slot := range s.sortedSlots() {
		if pattern == "" || glob.Match(slot.cur.Name) {
			res.Variables = append(res.Variables, slot.cur)
		}
	}
	return res, nil
}

func (st *state) setMany(req SetManyRequest, now time.Time) (SetManyResult, error) {
	s, err := st.session(req.Session, now)
	if err != nil {
		return SetManyResult{}, err
	}
	if len(req.Sets) == 0 {
		return SetManyResult{}, errorf(ErrInvalidArgument, "no updates given")
	}
	items := make([]SetItemResult, len(req.Sets))

	if !req.Atomic {
		for i, set := range req.Sets {
			slot, err := st.checkSet(s, set)
			if err != nil {
				items[i].Err = err
				continue
			}
			items[i].SetResult = st.applySet(s, slot, set, st.nextRevision(s), now)
		}
		return SetManyResult{Items: items, Revision: s.rev}, nil
	}

	// Atomic: check everything before changing anything.
	slots := make([]*varSlot, len(req.Sets))
	for i, set := range req.Sets {
		slot, err := st.checkSet(s, set)
		if err != nil {
			if len(req.Sets) > 1 {
				err = wrapItem(i, set.Variable, err)
			}
			return SetManyResult{}, err
		}
		if slices.Contains(slots[:i], slot) {
			return SetManyResult{}, errorf(ErrInvalidArgument, "update %d: variable %q is set twice in one atomic call", i, set.Variable)
		}
		slots[i] = slot
	}
	rev := st.nextRevision(s)
	for i, set := range req.Sets {
		items[i].SetResult = st.applySet(s, slots[i], set, rev, now)
	}
	return SetManyResult{Items: items, Revision: rev}, nil
}

// checkSet reports why set cannot apply, or returns its variable.
func (s *session) checkSet(set SetRequest) (*varSlot, error) {
	if err := checkIdent(set.Variable); err != nil {
		return nil, err
	}
	slot := s.lookup(set.Variable)
	if slot == nil {
		return nil, errorf(ErrVariableNotFound, "no variable %q in session %q", set.Variable, s.id)
	}
	cur := slot.cur
	if err := slot.cc.check(cur.Type, set.Value); err != nil {
		return nil, err
	}
	if set.HasExpectedVersion && set.ExpectedVersion != cur.Version {
		return nil, &VersionConflictError{Variable: cur.Name, Expected: set.ExpectedVersion, Current: cur.Version}
	}
	return slot, nil
}

// applySet writes a checked set at rev and stages its event.
func (st *state) applySet(s *session, slot *varSlot, set SetRequest, rev int64, now time.Time) SetResult {
	old := slot.cur
	v := *old
	v.Value = set.Value
	v.Version++
	st.counts.sets++
	v.ModRevision = rev
	v.UpdatedAt = now
	v.Source = set.Source
	meta := maps.Clone(set.Metadata)
	if len(meta) > 0 {
		v.Metadata = maps.Clone(old.Metadata)
		if v.Metadata == nil {
			v.Metadata = make(map[string]string, len(meta))
		}
		maps.Copy(v.Metadata, meta)
	}
	slot.cur = &v

	ev := Event{Type: EventValueChange, Revision: rev, Variable: &v, OldValue: old.Value,
		Source: set.Source, Metadata: meta, Time: now}
	st.record(s, ev)
	if slot.watchers.live() > 1 {
		ev.Memo = new(Memo) // after record: history keeps no memo
	}
	for _, sub := range slot.watchers.subs {
		if !sub.removed {
			st.stage(sub, ev)
		}
	}
	return SetResult{Variable: &v, Revision: rev}
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
	st.counts.variables--
	ev := Event{Type: EventVariableDeleted, Revision: rev, Variable: slot.cur, Time: now}
	st.record(s, ev)
	for _, sub := range slot.watchers.subs {
		if !sub.removed {
			st.stage(sub, ev)
		}
	}
	return rev, nil
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
	for len(st.expiries) > 0 && !now.Before(st.expiries[0].at) {
		e := heap.Pop(&st.expiries).(expiryEntry)
		switch {
		case e.s.gone:
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
