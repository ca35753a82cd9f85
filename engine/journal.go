package engine

import (
	"errors"
	"fmt"
	"io"
)

// Journal is where an engine makes its changes durable (package journal
// implements it on disk). The engine hands it opaque records it encodes
// itself, so it needs no storage code, and the journal needs no engine
// types.
//
// The engine's syncer goroutine calls Append with the records of one or
// more loop cycles, before the loop publishes their events or answers
// anyone: one fsync covers them all (group commit, journal_pipeline.go).
// Load, Snapshot and Reset are called by the loop, never while an Append
// may run.
type Journal interface {
	// Load calls restore with the newest snapshot, if there is one, then
	// replay with every record appended after it, in order.
	Load(restore func(io.Reader) error, replay func(record []byte) error) error
	// Append makes records durable (as its fsync policy says) and reports
	// whether enough has been appended since the last snapshot to take a
	// new one.
	Append(records [][]byte) (snapshotDue bool, err error)
	// Snapshot records the state as of the last Append (Open takes one
	// right after Load): it calls write, on another goroutine unless wait,
	// with the file to write it to, and then drops the records the
	// snapshot covers. While one snapshot is being written, a new call
	// without wait does nothing.
	Snapshot(write func(io.Writer) error, wait bool) error
	// Reset makes the journal usable again after a failed Append, so that
	// Load and Append see what is on disk. landed reports that the failed
	// Append reached the log after all (its error came after the write).
	Reset() (landed bool, err error)
}

// ErrUnavailable: the engine could not make a write durable. The write was
// not acknowledged, and writes fail with it until the journal works again
// (see journal_fault.go); reads and watches go on.
var ErrUnavailable = errors.New("engine: storage unavailable")

// Open starts an engine whose changes are journaled in cfg.Journal, after
// loading the state the journal holds: its newest snapshot, then every
// record after it. Sessions whose TTL ran out while the engine was down
// are removed on the loop's first cycle.
func Open(cfg Config) (*Engine, error) {
	if cfg.Journal == nil {
		return New(cfg), nil
	}
	cfg = cfg.withDefaults()
	st, err := load(cfg)
	if err != nil {
		return nil, err
	}
	// A snapshot now makes the next start fast, and lets the journal drop
	// what it could not replay (journal.Options.TruncateCorrupt).
	if err := cfg.Journal.Snapshot(st.capture().write, true); err != nil {
		return nil, fmt.Errorf("engine: start snapshot: %w", err)
	}
	return start(cfg, st), nil
}

// load builds the state cfg.Journal holds.
func load(cfg Config) (*state, error) {
	st := newState(replayConfig(cfg))
	st.j.on, st.j.replaying = true, true
	err := cfg.Journal.Load(st.restore, func(rec []byte) error {
		err := st.replay(rec)
		st.publish()
		return err
	})
	if err != nil {
		return nil, err
	}
	st.cfg = cfg
	st.j.replaying = false
	st.counts = counts{variables: st.counts.variables} // replay is not traffic
	for _, s := range st.sessions {
		s.journaledExpiry = s.expiresAt
	}
	return st, nil
}

// snapshot captures the state on the loop (cheap: variables are immutable
// and histories are copied by slice) and has the journal encode and write
// it, on another goroutine unless wait.
func (e *Engine) snapshot(st *state, wait bool) {
	img := st.capture()
	if err := e.cfg.Journal.Snapshot(img.write, wait); err != nil {
		e.cfg.Logf("engine: snapshot failed: %v", err)
	}
}
