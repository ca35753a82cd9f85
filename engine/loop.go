package engine

import (
	"slices"
	"time"
)

// loop is the only goroutine that touches state. Each cycle it takes every
// command waiting (up to MaxBatch), applies them in arrival order, makes
// their changes durable (with a Journal: one append for the whole cycle;
// journal_fault.go says what happens when that fails),
// publishes the cycle's events to subscribers, and only then answers the
// callers. Under load that batches naturally; under light load a cycle is
// a single command and nothing waits.
func (e *Engine) loop(st *state) {
	defer close(e.stopped)
	batch := make([]command, 0, e.cfg.MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var armed time.Time // the deadline timer is set for; zero when stopped
	// down is set while the journal fails (journal_fault.go): writes fail
	// with down.err, reads go on.
	var down *degraded
	// broken is set when the engine cannot go on even degraded: every
	// command fails with it and nothing more is published (fail-stop; a
	// restart recovers every acknowledged write).
	var broken error

	for first := true; ; first = false {
		if !first {
			select {
			case c := <-e.cmds:
				batch = append(batch, c)
			drain:
				for len(batch) < cap(batch) {
					select {
					case c := <-e.cmds:
						batch = append(batch, c)
					default:
						break drain
					}
				}
			case <-timer.C:
				armed = time.Time{}
				if broken == nil {
					st.expireDue(e.cfg.Now())
				}
			case <-e.stop:
				e.shutdown(st, broken != nil || down != nil)
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
			}
		}
		if broken == nil {
			for _, c := range batch {
				if down != nil && isWrite(c) {
					c.(failable).fail(down.err)
					continue
				}
				c.apply(st)
				st.journalCommand(c)
			}
			if e.cfg.Journal != nil && down == nil {
				if err := e.commit(st); err != nil {
					fresh, ferr := e.fail(st, batch, err)
					if ferr != nil {
						broken = ferr
						e.cfg.Logf("engine: %v; failing every command from now on, restart to recover", ferr)
					} else {
						st, down = fresh, &degraded{err: err, lastProbe: time.Now()}
					}
					for i, c := range batch {
						c.finish()
						batch[i] = nil
					}
					batch = batch[:0]
					continue
				}
			}
		}
		if broken != nil {
			for i, c := range batch {
				c.(failable).fail(broken)
				c.finish()
				batch[i] = nil
			}
			batch = batch[:0]
			continue
		}
		st.publish()
		st.counts.cycle(len(batch))
		for i, c := range batch {
			c.finish()
			batch[i] = nil
		}
		batch = batch[:0]

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
