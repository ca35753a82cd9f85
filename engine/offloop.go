package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

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
//
// Metadata merges follow the same pattern when a call would copy more
// than maxLoopMergeEntries on the loop: the loop hands back the versions
// to merge into, the caller merges, and the loop uses a merge only while
// its base is the variable's current version (each write makes a new
// *Variable).

// checked is what the caller found out about one set off the loop.
type checked struct {
	// formed is checkWellFormed's verdict on the value.
	formed error
	// cc is the constraints the value was checked against (nil: none
	// yet), err their verdict.
	cc  *compiledConstraints
	err error
	// meta is the stats of the set's own metadata, or metaErr why the
	// limits refuse it (metaLim: which one, for the loop to count).
	meta    metaStats
	metaLim int
	metaErr error
	// merged, when base is not nil, is base's metadata with the set's
	// merged in, and mergedStats its stats: valid while base is the
	// variable's current version.
	base        *Variable
	merged      map[string]string
	mergedStats metaStats
	// routes, for a set that creates its variable (upsert.go), is how its
	// name matched the session's pattern watches, when the loop asked.
	routes map[*Subscription]bool
}

// needCheck asks the caller to check set i against cc, and (base not nil)
// to merge its metadata into base's.
type needCheck struct {
	i    int
	cc   *compiledConstraints
	base *Variable
	// route, when not nil, asks to match the name of set i, which creates
	// its variable, against these pattern watches.
	route []*Subscription
}

// maxCheckRounds bounds the trips of a call whose variables keep being
// registered again or written while its checks are made off the loop.
const maxCheckRounds = 4

// maxLoopMergeEntries is the metadata merging one call may do on the
// loop, in map entries copied (about 0.1 ms): past it, its caller merges.
// A merge copies the variable's whole map, since every version keeps its
// own: copying a 256-entry map and adding a key, 10,000 times (one call
// of 10,000 sets), takes about 70 ms.
const maxLoopMergeEntries = 4096

// mergeCost is what merging add into v's metadata costs on the loop:
// copying both, and sizing add against v's map.
func mergeCost(v *Variable, add map[string]string) int {
	if len(add) == 0 {
		return 0
	}
	return len(v.Metadata) + 2*len(add)
}

// precheck checks what needs no state, before the sets are sent. It
// returns sets with their metadata copied (the engine keeps the maps, the
// caller may reuse its own), so the loop copies nothing of the request.
func precheck(cfg *Config, sets []SetRequest) ([]SetRequest, prechecks) {
	var pre prechecks
	verdict := func(i int) *checked {
		if pre == nil {
			pre = make(prechecks, len(sets))
		}
		return &pre[i]
	}
	copied := false
	for i := range sets {
		if err := checkWellFormed(sets[i].Value); err != nil {
			verdict(i).formed = err
		}
		if len(sets[i].Metadata) > 0 {
			if !copied { // the caller's slice stays as it was
				sets, copied = slices.Clone(sets), true
			}
			set := &sets[i]
			set.Metadata = maps.Clone(set.Metadata)
			p := verdict(i)
			p.meta, p.metaLim, p.metaErr = metadataVerdict(cfg, set.Metadata,
				func() string { return "the metadata of the set of " + truncQuote(set.Variable) })
		}
		if set := &sets[i]; pre.at(i).metaErr == nil && over(len(set.Source), cfg.MaxMetadataValueBytes) {
			// The source is kept and sent with the variable like a
			// metadata value, and bounded like one.
			verdict(i).metaLim, verdict(i).metaErr = limMetaValue, &LimitError{Limit: LimitMetadataValueBytes,
				Value: int64(cfg.MaxMetadataValueBytes), Detail: fmt.Sprintf("the source of the set of %s has %d bytes", truncQuote(set.Variable), len(set.Source))}
		}
	}
	return sets, pre
}

// prechecks is one checked per set, or nil when every set's is the zero
// one: a well-formed value with no metadata, the common write, then costs
// no verdicts at all (120 bytes a set, a fifth of what a pipelined set
// allocated).
type prechecks []checked

// noChecks is the zero verdict at returns for every set of a nil
// prechecks. Shared by every goroutine: read only, never written (whoever
// records a verdict makes the slice first, see answerNeeds).
var noChecks checked

// at returns set i's verdict, for reading.
func (p prechecks) at(i int) *checked {
	if p == nil {
		return &noChecks
	}
	return &p[i]
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
	if cc == nil || cc.free {
		return nil, false
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
	if e.repl != nil {
		return e.replicatedSetMany(ctx, req)
	}
	var pre prechecks
	req.Sets, pre = precheck(&e.cfg, req.Sets)
	for round := 1; ; round++ {
		c := &setManyCmd{req: req, pre: pre, now: e.now()}
		res, err := run(ctx, e, c, &c.reply)
		if err != nil || len(c.needs) == 0 {
			return res, err
		}
		if round == maxCheckRounds {
			return SetManyResult{}, errorf(ErrVersionConflict, "the variables of session %q were registered again or written %d times while this call was checked; try again", req.Session, round)
		}
		pre = answerNeeds(req.Sets, pre, c.needs)
	}
}

// answerNeeds makes, into pre, the checks the loop asked for in needs.
// It returns pre, made if it was nil.
func answerNeeds(sets []SetRequest, pre prechecks, needs []needCheck) prechecks {
	if pre == nil && len(needs) > 0 {
		pre = make(prechecks, len(sets))
	}
	for _, n := range needs {
		set, p := sets[n.i], &pre[n.i]
		if n.cc != nil {
			p.cc, p.err = n.cc, n.cc.checkConstraints(set.Value.Type(), set.Value)
		}
		if n.base != nil {
			p.base, p.merged = n.base, mergeMetadata(n.base.Metadata, set.Metadata)
			p.mergedStats = n.base.meta.merged(n.base.Metadata, set.Metadata)
		}
		if n.route != nil {
			p.routes = routeName(set.Variable, n.route)
		}
	}
	return pre
}

// registered is a registration checked off the loop: its constraints
// compiled and its value checked against them (err is the first
// failure), and its metadata copied and checked against the per-map
// limits (metaErr, metaLim: which one).
type registered struct {
	cc       *compiledConstraints
	err      error
	metadata map[string]string
	meta     metaStats
	metaLim  int
	metaErr  error
}

func checkRegistration(req RegisterRequest, cfg *Config) registered {
	r := registered{metadata: maps.Clone(req.Metadata)}
	r.meta, r.metaLim, r.metaErr = metadataVerdict(cfg, r.metadata,
		func() string { return "the metadata of variable " + truncQuote(req.Name) })
	cc, err := compileConstraints(req.Type, req.Constraints)
	if err != nil {
		r.err = err
		return r
	}
	r.cc = cc
	if over(ValueBytes(req.Value), cfg.MaxValueBytes) {
		// The loop refuses it for its size before looking at this
		// verdict: spare the caller a pattern over an oversized value.
		return r
	}
	r.err = cc.check(req.Type, req.Value)
	return r
}
