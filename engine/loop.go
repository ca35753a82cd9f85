package engine

import "time"

// loop is the only goroutine that touches state. Each cycle it takes every
// command waiting (up to MaxBatch), applies them in arrival order, publishes
// the cycle's events to subscribers, and only then answers the callers.
// Under load that batches naturally; under light load a cycle is a single
// command and nothing waits.
func (e *Engine) loop(st *state) {
	defer close(e.stopped)
	batch := make([]command, 0, e.cfg.MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var armed time.Time // the deadline timer is set for; zero when stopped

	for {
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
			st.expireDue(e.cfg.Now())
		case <-e.stop:
			e.shutdown(st)
			return
		}

		for _, c := range batch {
			c.apply(st)
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

// shutdown fails every command still queued and ends every subscription.
// Close holds closeMu, so no new command can arrive while it drains.
func (e *Engine) shutdown(st *state) {
	for {
		select {
		case c := <-e.cmds:
			c.(failable).fail(ErrClosed)
			c.finish()
		default:
			st.endAll(ErrClosed)
			return
		}
	}
}
