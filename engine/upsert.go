package engine

import (
	"fmt"
	"time"
)

// An upsert is a set that creates its variable when the session has none
// of that name: SetRequest.CreateType names the type. High-frequency
// producers (a training loop's metrics, a sensor feed) then need no
// registration round trip before the first write.
//
// The variable is created with no constraints and the set's metadata, and
// its first value is that of the set, all at one revision: watchers see
// EventVariableRegistered and then EventValueChange (in this order, at the
// same revision), as they see a registration followed by a set, so a
// watcher written for register-then-set needs no change. The variable's
// Version is 1: one write.
//
// A set naming a variable that exists is a plain set, whatever CreateType
// says, except that CreateType must then be the variable's type: a
// producer that believes it writes floats into an integer is told so
// rather than silently mistyped.

// createPlan is a checked creation: the constraints the variable gets (none,
// compiled for its type).
type createPlan struct {
	cc *compiledConstraints
}

// creates reports whether set would create its variable in s.
func (s *session) creates(set *SetRequest) bool {
	return set.CreateType != 0 && s.lookup(set.Variable) == nil
}

// checkCreate is checkSet for a set that creates its variable: the checks
// of a registration of the set's name, type and value, with no
// constraints. pending is as for checkSet; earlier counts the variables
// earlier sets of the same atomic call create, for the variable limit.
// The tenant quota is the caller's to check (the growth of an atomic call
// is checked once for all its sets).
func (st *state) checkCreate(s *session, set *SetRequest, pre *checked, pending, earlier int) (setPlan, error) {
	name := set.Variable
	if err := st.checkValue(set.Value); err != nil {
		return setPlan{}, err
	}
	if err := checkIdent(name); err != nil {
		return setPlan{}, err
	}
	if isID(name) { // ids are drawn by the engine: nothing to create
		return setPlan{}, errorf(ErrVariableNotFound, "no variable %q in session %q", name, s.id)
	}
	if err := checkName(name); err != nil {
		return setPlan{}, err
	}
	if !set.CreateType.Valid() {
		return setPlan{}, errorf(ErrInvalidArgument, "variable type to create is unknown (%d)", int(set.CreateType))
	}
	if err := checkKind(set.CreateType, set.Value); err != nil {
		return setPlan{}, err
	}
	if pre.formed != nil {
		return setPlan{}, pre.formed
	}
	if set.HasExpectedVersion && set.ExpectedVersion != 0 {
		// Version 0 is "does not exist yet": it is what a create-only
		// write expects.
		return setPlan{}, &VersionConflictError{Variable: name, Expected: set.ExpectedVersion, Current: 0}
	}
	if limit := st.cfg.MaxVariablesPerSession; limit >= 0 && len(s.vars)+earlier >= limit {
		return setPlan{}, st.refuse(limVariables, limit, "session %q has %d variables", s.id, len(s.vars)+earlier)
	}
	cc, err := compileConstraints(set.CreateType, Constraints{})
	if err != nil { // a choice variable needs its choices: register it
		return setPlan{}, fmt.Errorf("%w (register %s variables with their constraints)", err, set.CreateType)
	}
	if err := st.reportMetadata(pre.metaLim, pre.metaErr); err != nil {
		return setPlan{}, err
	}
	if err := st.checkMerged(s, name, pre.meta, pre.meta.bytes, pending); err != nil {
		return setPlan{}, err
	}
	// The id is not drawn yet: 20 bytes hold any.
	next := &Variable{ID: "00000000000000000000", Name: name, Value: set.Value, Source: set.Source, meta: pre.meta}
	if n := updateWire(next, cc.wire, Value{}, set.Source, pre.meta); over(n, st.maxUpdate()) {
		return setPlan{}, st.refuseMessage("the creation of variable %s would take about %d bytes encoded", truncQuote(name), n)
	}
	return setPlan{create: &createPlan{cc: cc}, meta: pre.meta, setMeta: pre.meta,
		answer: variableWire(next, cc.wire) + len(name) + 64}, nil
}

// applyCreate creates the variable of a checked set at rev, with its
// registration and its first value (see the top of this file).
func (st *state) applyCreate(s *session, plan *setPlan, set *SetRequest, routes map[*Subscription]bool, rev int64, now time.Time) SetResult {
	tmpl := &Variable{Name: set.Variable, Type: set.CreateType, Value: set.Value,
		Source: set.Source, meta: plan.meta}
	if len(set.Metadata) > 0 { // the caller's copy (precheck): the engine's now
		tmpl.Metadata = set.Metadata
	}
	v := st.addVariable(s, tmpl, plan.create.cc, ValueBytes(set.Value), routes, rev, now)
	st.counts.sets++
	ev := Event{Type: EventValueChange, Revision: rev, Variable: v, Source: set.Source,
		Metadata: set.Metadata, Time: now}
	ev.bytes = eventSizeWith(ev, plan.setMeta)
	st.record(s, &ev)
	slot := s.vars[v.ID]
	if slot.watchers.live() > 1 {
		ev.Memo = new(Memo) // after record: history keeps no memo
	}
	st.route(s, slot, &ev)
	return SetResult{Variable: v, Revision: rev}
}

// growth is what a planned set adds to its tenant's bytes.
func (p *setPlan) growth(set *SetRequest) int {
	if p.create != nil {
		return ValueBytes(set.Value)
	}
	return setCharge(p.slot, set) - p.slot.bytes
}

// routeNeed asks the caller to match the name of a set that creates its
// variable against the session's pattern watches, when doing so on the
// loop would cost too much (as a registration does, see names.go).
func (s *session) routeNeed(i int, set *SetRequest, pre *checked) (needCheck, bool) {
	if pre.routes != nil || !set.CreateType.Valid() || isID(set.Variable) ||
		s.routeCost(set.Variable) <= maxLoopGlobSteps {
		return needCheck{}, false
	}
	return needCheck{i: i, route: s.livePatternSubs()}, true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
