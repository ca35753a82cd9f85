package engine

import (
	"context"
	"errors"
	"time"
)

// Pipelined writes. A blocking Set costs a channel send, a loop cycle and
// a wake-up of its caller: about 1.3 µs, most of it scheduling, whatever
// the loop does. A producer with many writes to make hands them over at
// once with SetBatches: they travel in a few commands of pipelineSets
// sets, are applied in the order given (the commands are sent in order
// over the one FIFO channel, and each applies its batches in order), and
// the caller wakes once per command, not per set.
//
// Order must hold even where a batch cannot be decided on the loop alone
// (costly constraints, a large metadata merge, a registration to route:
// offloop.go). The loop then stops at that batch: it and everything after
// it in the call is left unapplied (every later command of the call sees
// the run halted and skips), the caller makes the checks the loop asked
// for and sends the rest again. A command that fails whole (the journal
// failed, the engine closed) halts the run the same way, so what a call
// applied is always a prefix of what it was given.

// pipelineSets is how many sets one command of a SetBatches call carries
// (a single larger batch travels alone): about 0.4 ms of loop work, so a
// pipelined writer leaves room in each cycle for everyone else. A package
// variable so that tests can shrink it.
var pipelineSets = 1024

// BatchResult is how one batch of SetBatches went: Err is the whole
// batch's failure (its session is missing, an atomic batch failed, or it
// was not applied because an earlier batch of the call failed whole), and
// otherwise Items says how each set went, as for SetMany.
type BatchResult struct {
	SetManyResult
	Err error
}

// pipelineRun is what the commands of one round of a SetBatches call
// share. Owned by the loop goroutine while the commands are in flight;
// the caller reads it once they have all finished.
type pipelineRun struct {
	halted bool // a batch needed off-loop checks, or a command failed
}

// pipelineCmd applies its batches in order, stopping at the first that
// needs checks made off the loop.
type pipelineCmd struct {
	reply[struct{}]
	run    *pipelineRun
	groups []*setManyCmd
	next   int // set by apply: the groups before it were applied
	now    time.Time
}

func (c *pipelineCmd) apply(st *state) {
	for ; c.next < len(c.groups) && !c.run.halted; c.next++ {
		g := c.groups[c.next]
		g.now = c.now
		if len(g.req.Sets) == 0 { // a barrier: answers the revision
			s, err := st.session(g.req.Session, c.now)
			if err != nil {
				g.fail(err)
			} else {
				g.set(SetManyResult{Revision: s.rev}, nil)
			}
			continue
		}
		g.apply(st)
		if len(g.needs) > 0 {
			c.run.halted = true
			return
		}
	}
}

// fail is called by the loop for a command it will not apply, or whose
// changes it dropped: the commands after it must not apply either.
func (c *pipelineCmd) fail(err error) {
	c.reply.fail(err)
	c.run.halted = true
}

// applied returns the batches apply applied.
func (c *pipelineCmd) applied() []*setManyCmd { return c.groups[:c.next] }

// SetBatches applies batches in the order given, each as SetMany would,
// and returns one result per batch, in that order. The batches may name
// different sessions.
//
// # Notes
//
// It waits once per pipelineSets sets rather than once per set, which is
// what makes it fast: one goroutine can keep the loop busy. If ctx ends
// or the engine fails part way, the batches applied are a prefix of
// batches and the others fail with the reason; a batch that was handed to
// the loop is waited for even if ctx ends (it may already be applied).
func (e *Engine) SetBatches(ctx context.Context, batches []SetManyRequest) []BatchResult {
	if e.repl != nil {
		return e.replicatedBatches(ctx, batches)
	}
	results := make([]BatchResult, len(batches))
	groups := make([]*setManyCmd, len(batches))
	for i, b := range batches {
		g := &setManyCmd{req: b}
		g.req.Sets, g.pre = precheck(&e.cfg, b.Sets)
		groups[i] = g
	}
	rounds := 0 // of the batch at the head of groups
	for done := 0; done < len(groups); {
		n, err := e.pipeline(ctx, groups[done:])
		for _, g := range groups[done : done+n] {
			results[done] = BatchResult{SetManyResult: g.res, Err: g.err}
			done++
			rounds = 0
		}
		if done == len(groups) {
			break
		}
		if err != nil {
			for i := done; i < len(groups); i++ {
				results[i].Err = err
			}
			break
		}
		// The batch at done needs checks made here: make them and go on
		// from it.
		g := groups[done]
		if rounds++; rounds == maxCheckRounds {
			results[done].Err = errorf(ErrVersionConflict, "the variables of session %q were registered again or written %d times while this batch was checked; try again", g.req.Session, rounds)
			done++
			rounds = 0
			continue
		}
		g.pre = answerNeeds(g.req.Sets, g.pre, g.needs)
		groups[done] = &setManyCmd{req: g.req, pre: g.pre}
	}
	return results
}

// pipeline sends groups to the loop in commands of about pipelineSets
// sets and waits for them. It returns how many groups, from the first,
// were applied (their replies hold their results), and the error that
// stopped the others, if any: nil when the loop stopped at a group that
// needs off-loop checks.
func (e *Engine) pipeline(ctx context.Context, groups []*setManyCmd) (int, error) {
	run := &pipelineRun{}
	var cmds []*pipelineCmd
	var sendErr error
	for start := 0; start < len(groups); {
		end, sets := start, 0
		for end < len(groups) && (end == start || sets+len(groups[end].req.Sets) <= pipelineSets) {
			sets += len(groups[end].req.Sets)
			end++
		}
		c := &pipelineCmd{run: run, groups: groups[start:end], now: e.now()}
		c.done = make(chan struct{})
		if sendErr = e.submit(ctx, withScope(ctx, c)); sendErr != nil {
			break
		}
		cmds = append(cmds, c)
		start = end
	}
	applied := 0
	var stop error
	for _, c := range cmds {
		<-c.done
		if stop != nil {
			continue
		}
		if c.err != nil { // none of its groups stayed applied
			stop = c.err
			continue
		}
		applied += c.next
		if c.next < len(c.groups) {
			stop = errHalted
		}
	}
	switch {
	case stop == errHalted:
		return applied, nil
	case stop != nil:
		return applied, stop
	}
	return applied, sendErr
}

// errHalted marks, inside pipeline only, a run that stopped at a group
// needing checks.
var errHalted = errors.New("engine: pipeline halted")
