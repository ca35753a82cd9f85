package engine

import (
	"fmt"
	"time"
)

// When the journal fails an append (a full disk, an I/O error), the batch
// it was given is applied in memory but not durable. The loop then
//
//  1. fails every command of the batch with ErrUnavailable and ends every
//     subscription with it (so nobody sees the batch: clients resume);
//  2. has the journal reset and reloads the state from it, which drops the
//     batch (or keeps it, if it reached the disk after all: it was never
//     acknowledged, so either is right);
//  3. runs degraded: reads and watches are served, writes fail with the
//     error at once, unapplied, and what reads change (TTL refreshes,
//     expiries) waits in memory;
//  4. when a write arrives, at most every probeInterval, probes: resets the
//     journal and appends what waited. If that works, writes are taken
//     again.
//
// If the reload itself fails, the engine fails every command from then on
// (fail-stop), and a restart recovers every acknowledged write.

// probeInterval spaces the attempts to use the journal again. A variable
// only so that tests can probe at every write.
var probeInterval = time.Second

// recNoop is the probe's record when nothing else waits; replay skips it.
const recNoop byte = 7

// isWrite reports whether c would change what the journal holds.
func isWrite(c command) bool {
	if sc, ok := c.(*scoped); ok {
		c = sc.command
	}
	switch c.(type) {
	case *createSessionCmd, *registerCmd, *setManyCmd, *deleteCmd, *closeSessionCmd, *pipelineCmd:
		return true
	}
	return false
}

// StorageState says how the journal is doing, for health reports and
// metrics: StorageOK (or no journal), StorageDegraded (writes fail, reads
// and watches go on, the disk is probed), StorageBroken (every call fails
// until a restart). Safe for concurrent use.
func (e *Engine) StorageState() StorageState { return StorageState(e.storage.Load()) }

// StorageState is the journal's state (Engine.StorageState).
type StorageState int32

const (
	StorageOK StorageState = iota
	StorageDegraded
	StorageBroken
)

func (s StorageState) String() string {
	return [...]string{"ok", "degraded", "broken"}[s]
}

// noteStorage records the loop's view of the journal.
func (e *Engine) noteStorage(down *degraded, broken error) {
	switch {
	case broken != nil:
		e.storage.Store(int32(StorageBroken))
	case down != nil:
		e.storage.Store(int32(StorageDegraded))
	default:
		e.storage.Store(int32(StorageOK))
	}
}

// degraded is the loop's state after a failed append.
type degraded struct {
	err       error     // what writes fail with
	lastProbe time.Time // when the journal was last tried
}

// fail handles a failed append of batch's records: steps 1 and 2. It
// returns the state to go on with, or an error if the engine must stop.
func (e *Engine) fail(st *state, batch []command, err error) (*state, error) {
	for _, c := range batch {
		c.(failable).fail(err)
	}
	st.endAll(err)
	e.cfg.Logf("engine: %v; writes fail until the storage works again, reads go on", err)
	if _, rerr := e.cfg.Journal.Reset(); rerr != nil {
		return nil, fmt.Errorf("%w (and the journal cannot be reopened: %v)", err, rerr)
	}
	fresh, rerr := load(e.cfg)
	if rerr != nil {
		return nil, fmt.Errorf("%w (and the state cannot be reloaded: %v)", err, rerr)
	}
	return fresh, nil
}

// failed handles a failed append of cmds' records: it fails and answers
// them, and returns the state to go on with and how: degraded, or broken
// when the engine cannot go on at all.
func (e *Engine) failed(st *state, cmds []command, err error) (*state, *degraded, error) {
	fresh, ferr := e.fail(st, cmds, err)
	finishAll(cmds)
	if ferr != nil {
		e.cfg.Logf("engine: %v; failing every command from now on, restart to recover", ferr)
		return st, nil, ferr
	}
	return fresh, &degraded{err: err, lastProbe: time.Now()}, nil
}

// probe tries the journal again (step 4): it appends what reads changed
// meanwhile, or a no-op record.
func (e *Engine) probe(st *state) error {
	landed, err := e.cfg.Journal.Reset()
	if err != nil {
		return err
	}
	if landed { // the last probe's records reached the log after all
		st.j.records = nil
		return nil
	}
	recs := st.j.records
	if len(recs) == 0 {
		st.j.begin(recNoop, time.Now(), nil)
		st.j.end()
		recs = st.j.records
	}
	if _, err := e.cfg.Journal.Append(recs); err != nil {
		return err
	}
	st.j.records = nil
	return nil
}
