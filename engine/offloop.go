package engine

import "context"

// Value checks whose cost the client controls run in the caller's
// goroutine, never on the loop: a pattern is RE2 over the whole value (a
// 500-state pattern on 1 MiB took 5.7 s), a length counts runes, UTF-8
// validation reads every byte. The loop applies commands one at a time, so
// any of these on it would stall every session of every tenant for as
// long as the client liked (see RATIONALE.md, "Costly checks run off the
// loop").
//
// What needs no state is checked before the command is sent: a value's
// well-formedness, and at registration the constraints and the value
// against them (both are in the request). A set's constraints are the
// variable's, which only the loop knows. So a set to a variable with
// costly constraints takes two trips: the loop answers "check against
// these" with the variable's compiled constraints (immutable, so they can
// be shared with the caller), the caller checks, and sends the set again
// with the verdict. The loop trusts a verdict only if it was made against
// the very constraints the variable has now: each registration compiles
// its own, so a variable deleted and registered again in between is
// caught by pointer identity, and the caller checks again.

// checked is what the caller found out about one set's value off the
// loop.
type checked struct {
	// formed is checkWellFormed's verdict on the value.
	formed error
	// cc is the constraints the value was checked against (nil: none
	// yet), err their verdict.
	cc  *compiledConstraints
	err error
}

// needCheck asks the caller to check set i against cc.
type needCheck struct {
	i  int
	cc *compiledConstraints
}

// maxCheckRounds bounds the trips of one set whose variable keeps being
// registered again with new constraints while its value is checked.
const maxCheckRounds = 4

// precheck checks what needs no state, before the sets are sent.
func precheck(sets []SetRequest) []checked {
	pre := make([]checked, len(sets))
	for i, set := range sets {
		pre[i].formed = checkWellFormed(set.Value)
	}
	return pre
}

// checkOnLoop is check as the loop runs it, for a set to a variable of
// type typ with constraints cc: the costly parts come from pre. It reports
// need when pre holds no verdict for cc: the caller must check first.
func (cc *compiledConstraints) checkOnLoop(typ Type, v Value, pre *checked) (err error, need bool) {
	if err := checkKind(typ, v); err != nil {
		return err, false
	}
	if pre.formed != nil {
		return pre.formed, false
	}
	if !cc.costly() {
		return cc.checkConstraints(typ, v), false
	}
	if pre.cc == cc {
		return pre.err, false
	}
	return nil, true
}

// setMany runs a setManyCmd, checking off the loop whatever the loop asks
// for, and sends it again until the loop has every verdict it needs.
func (e *Engine) setMany(ctx context.Context, req SetManyRequest) (SetManyResult, error) {
	pre := precheck(req.Sets)
	for round := 1; ; round++ {
		c := &setManyCmd{req: req, pre: pre, now: e.now()}
		res, err := run(ctx, e, c, &c.reply)
		if err != nil || len(c.needs) == 0 {
			return res, err
		}
		if round == maxCheckRounds {
			return SetManyResult{}, errorf(ErrVersionConflict, "the variables of session %q were registered again %d times while a value was checked; try again", req.Session, round)
		}
		for _, n := range c.needs {
			set := req.Sets[n.i]
			pre[n.i].cc, pre[n.i].err = n.cc, n.cc.checkConstraints(set.Value.Type(), set.Value)
		}
	}
}

// registered is a registration's constraints and value checked off the
// loop: compiled, and the value against them (err is the first failure).
type registered struct {
	cc  *compiledConstraints
	err error
}

func checkRegistration(req RegisterRequest, maxValueBytes int) registered {
	cc, err := compileConstraints(req.Type, req.Constraints)
	if err != nil {
		return registered{err: err}
	}
	if maxValueBytes >= 0 && ValueBytes(req.Value) > maxValueBytes {
		// The loop refuses it for its size before looking at this
		// verdict: spare the caller a pattern over an oversized value.
		return registered{cc: cc}
	}
	return registered{cc: cc, err: cc.check(req.Type, req.Value)}
}
