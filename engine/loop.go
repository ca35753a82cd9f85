package engine

import "time"

// loop is the only goroutine that touches state. Each cycle it takes every
// command waiting (up to MaxBatch), applies them in arrival order, makes
// their changes durable (with a Journal: one append for the whole cycle),
// publishes the cycle's events to subscribers, and only then answers the
// callers. Under load that batches naturally; under light load a cycle is
// a single command and nothing waits.
func (e *Engine) loop(st *state) {
	defer close(e.stopped)
	batch := make([]command, 0, e.cfg.MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var armed time.Time // the deadline timer is set for; zero when stopped
	// broken is set when the journal failed an append: the state then holds
	// changes that are not durable, so every later command fails with it
	// and nothing more is published (fail-stop; a restart recovers every
	// acknowledged write).
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
				e.shutdown(st, broken)
				return
			}
		} else if e.cfg.Journal != nil {
			// Sessions that expired while the engine was down go first.
			st.expireDue(e.cfg.Now())
		}

		if broken == nil {
			for _, c := range batch {
				c.apply(st)
				st.journalCommand(c)
			}
			if e.cfg.Journal != nil {
				if err := e.commit(st); err != nil {
					broken = err
					e.cfg.Logf("engine: %v; failing every command from now on, restart to recover", err)
					st.endAll(err)
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
// a durable engine that is not broken then writes a final snapshot, so the
// next start need not replay the log. Close holds closeMu, so no new
// command can arrive while it drains.
func (e *Engine) shutdown(st *state, broken error) {
	for {
		select {
		case c := <-e.cmds:
			c.(failable).fail(ErrClosed)
			c.finish()
		default:
			st.endAll(ErrClosed)
			if e.cfg.Journal != nil && broken == nil {
				e.snapshot(st, true)
			}
			return
		}
	}
}
