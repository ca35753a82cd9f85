package engine

import (
	"fmt"
	"runtime"
	"slices"
)

// A durable engine pipelines its commits: the loop hands a cycle's records
// to the syncer goroutine and goes on applying the next cycles while the
// disk syncs, instead of waiting out every fsync itself. What the later
// cycles applied is not durable yet, so nobody may see it: a cycle's
// events are published, and its callers answered (reads included, since
// they may have read the cycle before), only once every record up to and
// including its own is durable. Watch snapshots are safe too: the loop
// hands a subscription to its caller only in the reply.
//
// The syncer appends whatever queued while it synced in one Append, so
// with the loop never idle behind the disk, one fsync covers every cycle
// that arrived during the previous one (group commit across cycles). The
// journal is called by the syncer only while cycles are in flight, and by
// the loop (snapshots, resets, probes) only when none is.
//
// After a failed append the syncer appends nothing more of that epoch:
// the later cycles' records build on the lost ones, and the log must stay
// a prefix of what the loop applied. It answers each with the error, and
// the loop, once every cycle in flight has failed, recovers as
// journal_fault.go says.

// maxInFlight bounds the cycles waiting for their append: past it the
// loop stops taking commands until the disk catches up, so what waits
// stays bounded (each cycle holds at most Config.MaxBatch commands).
const maxInFlight = 64

// pendingCycle is a cycle applied but not yet durable: its records, what
// it will publish, and whom it will answer.
type pendingCycle struct {
	epoch int
	recs  [][]byte
	cmds  []command
	subs  []*Subscription // with what the cycle routed to them
	deliv []delivery
	revs  []publishedRev
}

// publishedRev is a session's revision and feed end as of its cycle.
type publishedRev struct {
	s       *session
	rev     int64
	feedEnd int64
}

// syncResult tells the loop what the syncer did with some cycles.
type syncResult struct {
	cycles int             // how many, in order
	ended  []*Subscription // ended by what was published: to unregister
	due    bool            // a snapshot is due
	// err is set when the cycles failed: nothing of them was published
	// or answered; failed holds their commands.
	err    error
	failed []command
}

// pipeline is the loop's side of the commit pipeline; only the loop
// touches it. The cycles themselves belong to the syncer once sent.
type pipeline struct {
	todo     chan *pendingCycle
	done     chan syncResult
	exited   chan struct{}
	inFlight int // cycles sent and not yet answered for
	epoch    int // bumped after a failure, so the syncer appends again
	// wantSnapshot: an append said a snapshot is due; it is taken once
	// nothing is in flight, so it covers exactly what the log holds.
	wantSnapshot bool
}

func newPipeline(j Journal) *pipeline {
	p := &pipeline{
		todo:   make(chan *pendingCycle, maxInFlight),
		done:   make(chan syncResult, maxInFlight),
		exited: make(chan struct{}),
	}
	go p.sync(j)
	return p
}

// sync is the syncer goroutine: it appends the cycles' records in order,
// as many cycles at a time as have queued, and then publishes and answers
// them itself, sparing the loop a wake-up on the way to every reply.
// Subscription.publish is safe off the loop; unregistering is not, so the
// subscriptions that ended go back to the loop.
func (p *pipeline) sync(j Journal) {
	defer close(p.exited)
	failedEpoch, failed := -1, error(nil)
	for c := range p.todo {
		cycles := []*pendingCycle{c}
	more:
		for len(cycles) < maxInFlight {
			select {
			case c, ok := <-p.todo:
				if !ok {
					break more
				}
				cycles = append(cycles, c)
			default:
				break more
			}
		}
		// After a failure nothing more of its epoch may reach the log:
		// it builds on what was lost. Cycles of one epoch come together.
		if c.epoch == failedEpoch {
			p.done <- failure(cycles, failed)
			continue
		}
		var recs [][]byte
		for _, c := range cycles {
			recs = append(recs, c.recs...)
		}
		due, err := false, error(nil)
		if len(recs) > 0 {
			due, err = j.Append(recs)
		}
		if err != nil {
			failedEpoch, failed = c.epoch, fmt.Errorf("%w: %w", ErrUnavailable, err)
			p.done <- failure(cycles, failed)
			continue
		}
		r := syncResult{cycles: len(cycles), due: due}
		for _, c := range cycles {
			for i, sub := range c.subs {
				if !sub.publish(c.deliv[i]) {
					r.ended = append(r.ended, sub)
				}
			}
			for _, pr := range c.revs {
				pr.s.published.Store(pr.rev)
				pr.s.feedPublished.Store(pr.feedEnd)
			}
			finishAll(c.cmds)
		}
		p.done <- r
		// Yield before taking the next group: the callers just answered,
		// and the loop, are runnable on this goroutine's P, which the next
		// Append's fsync would hold. A caller quick to write again then
		// gets into that group instead of waiting a whole fsync for the
		// one after (BenchmarkSyncerYields; RATIONALE.md, durability).
		if syncerYields {
			runtime.Gosched()
		}
	}
}

// syncerYields is false only in the benchmark that measures the yield.
var syncerYields = true

// failure is the result of cycles that failed with err.
func failure(cycles []*pendingCycle, err error) syncResult {
	r := syncResult{cycles: len(cycles), err: err}
	for _, c := range cycles {
		r.failed = append(r.failed, c.cmds...)
	}
	return r
}

// accepting reports whether the loop may take more commands.
func (p *pipeline) accepting() bool {
	return p.inFlight < maxInFlight && !p.wantSnapshot
}

// commit ends a cycle of the loop: it hands the cycle's records, staged
// events and callers to the syncer. A cycle without records still waits
// for the cycles before it, since it may have read what they wrote; with
// none in flight it is published and answered at once.
func (p *pipeline) commit(st *state, batch []command) {
	recs := st.takeRecords()
	if len(recs) == 0 && p.inFlight == 0 {
		st.publish()
		finishAll(batch)
		return
	}
	c := &pendingCycle{epoch: p.epoch, recs: recs, cmds: slices.Clone(batch)}
	for i, sub := range st.touched {
		c.subs = append(c.subs, sub)
		c.deliv = append(c.deliv, sub.takeDelivery())
		st.touched[i] = nil
	}
	st.touched = st.touched[:0]
	for i, s := range st.dirty {
		c.revs = append(c.revs, publishedRev{s, s.rev, s.feed.end})
		s.dirty = false
		st.dirty[i] = nil
	}
	st.dirty = st.dirty[:0]
	p.inFlight++
	p.todo <- c
	if hook := testHookCommitted; hook != nil {
		hook(len(batch))
	}
}

// testHookCommitted, when set (by tests, before the engine starts), hears
// how many commands each cycle handed to the syncer.
var testHookCommitted func(commands int)

// synced takes the syncer's result. On a failure it waits for every cycle
// in flight (they all fail) and returns their commands, to be failed and
// dropped as journal_fault.go says.
func (p *pipeline) synced(st *state, r syncResult) (failed []command, err error) {
	p.inFlight -= r.cycles
	for _, sub := range r.ended {
		st.dropEnded(sub)
	}
	if r.err == nil {
		p.wantSnapshot = p.wantSnapshot || r.due
		return nil, nil
	}
	failed = r.failed
	for p.inFlight > 0 {
		r := <-p.done
		p.inFlight -= r.cycles
		failed = append(failed, r.failed...)
	}
	p.epoch++
	p.wantSnapshot = false
	return failed, r.err
}

// drain waits until nothing is in flight (the loop is stopping), and
// returns what failed, if anything did.
func (p *pipeline) drain(st *state) (failed []command, err error) {
	for p.inFlight > 0 {
		if failed, err = p.synced(st, <-p.done); err != nil {
			return failed, err
		}
	}
	return nil, nil
}

// close stops the syncer; nothing may be in flight.
func (p *pipeline) close() {
	close(p.todo)
	<-p.exited
}

// finishAll answers every command of batch.
func finishAll(batch []command) {
	for _, c := range batch {
		c.finish()
	}
}
