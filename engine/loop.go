package engine

import (
	"slices"
	"time"
)

// loop is the only goroutine that touches state. Each cycle it takes every
// command waiting (up to MaxBatch), applies them in arrival order,
// publishes the cycle's events to subscribers, and only then answers the
// callers. Under load that batches naturally; under light load a cycle is
// a single command and nothing waits. With a Journal, a cycle's changes
// are made durable before anyone sees them: the loop hands its records to
// the commit pipeline and goes on with the next cycles while the disk
// syncs (journal_pipeline.go); journal_fault.go says what happens when an
// append fails.
func (e *Engine) loop(st *state) {
	defer close(e.stopped)
	batch := make([]command, 0, e.cfg.MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var armed time.Time // the deadline timer is set for; zero when stopped
	var p *pipeline
	var synced <-chan syncResult
	if e.cfg.Journal != nil {
		p = newPipeline(e.cfg.Journal)
		defer p.close()
		synced = p.done
	}
	// down is set while the journal fails (journal_fault.go): writes fail
	// with down.err, reads go on.
	var down *degraded
	// broken is set when the engine cannot go on even degraded: every
	// command fails with it and nothing more is published (fail-stop; a
	// restart recovers every acknowledged write).
	var broken error

	for first := true; ; first = false {
		expire := false // the expiry timer fired: expire after the batch
		if !first {
			cmds, expiries := e.cmds, timer.C
			if p != nil && !p.accepting() {
				cmds, expiries = nil, nil // wait for the disk
			}
			select {
			case c := <-cmds:
				batch = e.takeQueued(append(batch, c))
			case r := <-synced:
				if failed, err := p.synced(st, r); err != nil {
					st, down, broken = e.failed(st, failed, err)
					e.noteStorage(down, broken)
				} else if len(st.j.records) > 0 {
					// Unregistering the watches that ended re-armed their
					// sessions' TTLs: log that now, not with whatever
					// command comes next, and before any snapshot.
					p.commit(st, nil)
				} else if p.wantSnapshot && p.inFlight == 0 {
					e.snapshot(st, false)
					p.wantSnapshot = false
				}
				continue
			case <-expiries:
				armed = time.Time{}
				// Commands already queued go first: the timer must not
				// overtake them (the end of a session's last watch,
				// queued before the deadline came, re-arms its TTL).
				expire = broken == nil
				batch = e.takeQueued(batch)
			case <-e.stop:
				failing := broken != nil || down != nil
				if p != nil {
					if failed, err := p.drain(st); err != nil {
						for _, c := range failed {
							c.(failable).fail(err)
						}
						finishAll(failed)
						failing = true
					}
				}
				e.shutdown(st, failing)
				return
			}
		} else if e.cfg.Journal != nil {
			// Sessions that expired while the engine was down go first.
			st.expireDue(e.cfg.Now())
		}

		if down != nil && time.Since(down.lastProbe) >= probeInterval && slices.ContainsFunc(batch, isWrite) {
			down.lastProbe = time.Now()
			if err := e.probe(st); err == nil {
				e.cfg.Logf("engine: the storage works again: taking writes")
				down = nil
				e.noteStorage(down, broken)
			}
		}
		switch {
		case broken != nil:
			for _, c := range batch {
				c.(failable).fail(broken)
			}
			finishAll(batch)
		default:
			for _, c := range batch {
				if down != nil && isWrite(c) {
					c.(failable).fail(down.err)
					continue
				}
				c.apply(st)
				st.journalCommand(c)
			}
			if expire {
				st.expireDue(e.cfg.Now())
			}
			st.counts.cycle(len(batch))
			if p != nil && down == nil {
				p.commit(st, batch)
			} else {
				st.publish()
				finishAll(batch)
			}
		}
		clear(batch)
		batch = batch[:0]
		if e.repl != nil {
			e.flushOutbox(st)
		}

		if next, ok := st.nextExpiry(); !ok {
			if !armed.IsZero() {
				timer.Stop()
				armed = time.Time{}
			}
		} else if !next.Equal(armed) {
			timer.Reset(next.Sub(e.cfg.Now()))
			armed = next
		}
	}
}

// takeQueued appends the commands waiting, as many as batch has room for.
func (e *Engine) takeQueued(batch []command) []command {
	for len(batch) < cap(batch) {
		select {
		case c := <-e.cmds:
			batch = append(batch, c)
		default:
			return batch
		}
	}
	return batch
}

// shutdown fails every command still queued and ends every subscription;
// a durable engine whose journal works then writes a final snapshot, so
// the next start need not replay the log. Close holds closeMu, so no new
// command can arrive while it drains.
func (e *Engine) shutdown(st *state, failing bool) {
	for {
		select {
		case c := <-e.cmds:
			c.(failable).fail(ErrClosed)
			c.finish()
		default:
			st.endAll(ErrClosed)
			if e.cfg.Journal != nil && !failing {
				e.snapshot(st, true)
			}
			return
		}
	}
}
