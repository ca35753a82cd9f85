package engine

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// Journal is where an engine makes its changes durable (package journal
// implements it on disk). The engine hands it opaque records it encodes
// itself, so it needs no storage code, and the journal needs no engine
// types.
//
// The loop calls Append once per cycle, with the records of every command
// the cycle applied, before it publishes their events or answers anyone:
// one fsync covers the whole batch (group commit).
type Journal interface {
	// Load calls restore with the newest snapshot, if there is one, then
	// replay with every record appended after it, in order.
	Load(restore func(io.Reader) error, replay func(record []byte) error) error
	// Append makes records durable (as its fsync policy says) and reports
	// whether enough has been appended since the last snapshot to take a
	// new one.
	Append(records [][]byte) (snapshotDue bool, err error)
	// Snapshot records the state as of the last Append (Open takes one
	// right after Load): it calls write
	// (on another goroutine unless wait) with the file to write it to, and
	// then drops the records the snapshot covers. While one snapshot is
	// being written, a new call without wait does nothing.
	Snapshot(write func(io.Writer) error, wait bool) error
}

// ErrUnavailable: the engine could not make a write durable. The write was
// not acknowledged; the engine has stopped, and a restart recovers every
// acknowledged write from the journal.
var ErrUnavailable = errors.New("engine: storage unavailable")

// Record kinds. Commands that changed state are journaled as themselves
// (re-applied by the same code at replay); touches and removals are
// journaled as their effect, because what caused them (a read, the expiry
// timer) is not itself journaled.
const (
	recCreate   byte = 1
	recRegister byte = 2
	recSet      byte = 3
	recDelete   byte = 4
	recRemove   byte = 5
	recTouch    byte = 6
)

// touchSlack is the fraction of a session's TTL a read may move its
// deadline before the move is journaled: reads refresh the TTL, and
// journaling every read would make every read a write. After a restart a
// session's deadline is therefore at most TTL/touchSlack earlier than it
// was (never later); writes and heartbeats that move it further are
// journaled exactly.
const touchSlack = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journaling is the per-state part of durability: the records of the
// cycle being applied, and whether apply is replaying (then nothing is
// journaled and sessions expire only by their journaled removals).
type journaling struct {
	on        bool
	replaying bool
	records   [][]byte
	used      []*session // sessions read by the current command
	enc       encoder
}

// begin starts a record of kind for a command applied at now by tenant
// (nil: unscoped).
func (j *journaling) begin(kind byte, now time.Time, tenant *string) *encoder {
	e := &j.enc
	e.buf = append(e.buf[:0], 0, 0, 0, 0, kind) // CRC, filled by end
	e.varint(now.UnixNano())
	e.bool(tenant != nil)
	if tenant != nil {
		e.string(*tenant)
	}
	return e
}

// end seals the record begun last with its checksum.
func (j *journaling) end() {
	b := j.enc.buf
	crc := crc32.Checksum(b[4:], castagnoli)
	b[0], b[1], b[2], b[3] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
	j.records = append(j.records, append([]byte(nil), b...))
}

// noteUse is called by state.session for every session a command uses.
func (st *state) noteUse(s *session) {
	if st.j.on && !st.j.replaying {
		st.j.used = append(st.j.used, s)
	}
}

// noteRemoval journals the removal of s (closed or expired).
func (st *state) noteRemoval(s *session, now time.Time) {
	if !st.j.on || st.j.replaying {
		return
	}
	e := st.j.begin(recRemove, now, nil)
	e.string(s.id)
	e.string(s.incarnation)
	st.j.end()
}

// journalCommand journals what c, just applied, changed.
func (st *state) journalCommand(c command) {
	if !st.j.on {
		return
	}
	var tenant *string
	if sc, ok := c.(*scoped); ok {
		tenant, c = &sc.tenant, sc.command
	}
	switch c := c.(type) {
	case *createSessionCmd:
		if c.err == nil && c.res.created {
			e := st.j.begin(recCreate, c.now, tenant)
			e.string(c.req.ID)
			e.string(c.req.Incarnation)
			e.string(c.req.Owner)
			e.metadata(c.req.Metadata)
			e.varint(int64(st.sessions[c.req.ID].ttl)) // the default may change

			st.j.end()
			st.journaled(c.req.ID)
		}
	case *registerCmd:
		if c.err == nil {
			r := c.req
			e := st.j.begin(recRegister, c.now, tenant)
			e.string(r.Session)
			e.string(r.Name)
			e.uvarint(uint64(r.Type))
			e.value(r.Value)
			e.constraints(r.Constraints)
			e.metadata(r.Metadata)
			st.j.end()
			st.journaled(r.Session)
		}
	case *setManyCmd:
		st.journalSets(c, tenant)
	case *deleteCmd:
		if c.err == nil {
			e := st.j.begin(recDelete, c.now, tenant)
			e.string(c.session)
			e.string(c.ident)
			st.j.end()
			st.journaled(c.session)
		}
	}
	st.journalTouches()
}

// journalSets journals the sets of c that applied. A non-atomic call is
// journaled with only its successful items: each took its own revision and
// the failed ones took none, so replaying the successes alone gives the
// same revisions, and needs no check (like a limit) to fail the same way.
func (st *state) journalSets(c *setManyCmd, tenant *string) {
	if c.err != nil {
		return
	}
	var ok []int
	for i, it := range c.res.Items {
		if it.Err == nil {
			ok = append(ok, i)
		}
	}
	if len(ok) == 0 {
		return
	}
	e := st.j.begin(recSet, c.now, tenant)
	e.string(c.req.Session)
	e.bool(c.req.Atomic)
	e.uvarint(uint64(len(ok)))
	for _, i := range ok {
		s := c.req.Sets[i]
		e.string(s.Variable)
		e.value(s.Value)
		e.metadata(s.Metadata)
		e.string(s.Source)
		e.bool(s.HasExpectedVersion)
		e.varint(s.ExpectedVersion)
	}
	st.j.end()
	st.journaled(c.req.Session)
}

// journaled notes that a journaled command used session id at its
// deadline: replaying the command refreshes the TTL exactly.
func (st *state) journaled(id string) {
	if s := st.sessions[id]; s != nil {
		s.journaledExpiry = s.expiresAt
	}
}

// journalTouches journals the TTL refreshes of the sessions the command
// read, when they moved a deadline by more than TTL/touchSlack.
func (st *state) journalTouches() {
	for i, s := range st.j.used {
		st.j.used[i] = nil
		if s.gone || s.expiresAt.Sub(s.journaledExpiry) <= s.ttl/touchSlack {
			continue
		}
		e := st.j.begin(recTouch, s.lastUsed, nil)
		e.string(s.id)
		st.j.end()
		s.journaledExpiry = s.expiresAt
	}
	st.j.used = st.j.used[:0]
}

// takeRecords returns the cycle's records and starts a new list.
func (st *state) takeRecords() [][]byte {
	r := st.j.records
	st.j.records = nil
	return r
}

// replay applies one journaled record to st.
func (st *state) replay(rec []byte) error {
	if len(rec) < 5 {
		return fmt.Errorf("%w: record of %d bytes", errCorrupt, len(rec))
	}
	want := uint32(rec[0]) | uint32(rec[1])<<8 | uint32(rec[2])<<16 | uint32(rec[3])<<24
	if got := crc32.Checksum(rec[4:], castagnoli); got != want {
		return fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", errCorrupt, want, got)
	}
	d := &decoder{buf: rec[5:]}
	kind := rec[4]
	now := time.Unix(0, d.varint())
	var tenant *string
	if d.bool() {
		t := d.string()
		tenant = &t
	}
	var c command
	switch kind {
	case recCreate:
		req := CreateSessionRequest{ID: d.string(), Incarnation: d.string(), Owner: d.string(), Metadata: d.metadata()}
		req.TTL = time.Duration(d.varint())
		c = &createSessionCmd{req: req, now: now}
	case recRegister:
		req := RegisterRequest{Session: d.string(), Name: d.string(), Type: Type(d.uvarint()),
			Value: d.value(), Constraints: d.constraints(), Metadata: d.metadata()}
		c = &registerCmd{req: req, now: now}
	case recSet:
		req := SetManyRequest{Session: d.string(), Atomic: d.bool()}
		req.Sets = make([]SetRequest, d.length(4))
		for i := range req.Sets {
			req.Sets[i] = SetRequest{Session: req.Session, Variable: d.string(), Value: d.value(),
				Metadata: d.metadata(), Source: d.string(), HasExpectedVersion: d.bool(), ExpectedVersion: d.varint()}
		}
		c = &setManyCmd{req: req, now: now}
	case recDelete:
		c = &deleteCmd{session: d.string(), ident: d.string(), now: now}
	case recRemove, recTouch:
		id := d.string()
		var inc string
		if kind == recRemove {
			inc = d.string()
		}
		if d.err != nil {
			return d.err
		}
		s := st.sessions[id]
		if s == nil || (kind == recRemove && s.incarnation != inc) {
			return fmt.Errorf("replay diverged: record %d names session %q, which the replayed state does not have", kind, id)
		}
		if kind == recTouch {
			s.touch(now)
		} else {
			st.removeSession(s, now)
		}
		return nil
	default:
		return fmt.Errorf("%w: unknown record kind %d", errCorrupt, kind)
	}
	if d.err != nil {
		return d.err
	}
	if len(d.buf) != 0 {
		return fmt.Errorf("%w: %d bytes after record", errCorrupt, len(d.buf))
	}
	if tenant != nil {
		c = &scoped{command: c, tenant: *tenant}
	}
	c.apply(st)
	if err := replayErr(c); err != nil {
		return fmt.Errorf("replay diverged: a journaled change failed again: %w", err)
	}
	return nil
}

// replayErr is the error a replayed command failed with, if any.
func replayErr(c command) error {
	if sc, ok := c.(*scoped); ok {
		c = sc.command
	}
	switch c := c.(type) {
	case *createSessionCmd:
		if c.err == nil && !c.res.created {
			return fmt.Errorf("session %q already exists", c.req.ID)
		}
		return c.err
	case *registerCmd:
		return c.err
	case *deleteCmd:
		return c.err
	case *setManyCmd:
		if c.err != nil {
			return c.err
		}
		for _, it := range c.res.Items {
			if it.Err != nil {
				return it.Err
			}
		}
	}
	return nil
}

// replayConfig is cfg with every limit lifted: a journaled change passed
// the limits of its day, and must apply again under any configuration.
func replayConfig(cfg Config) Config {
	cfg.MaxSessions, cfg.MaxVariablesPerSession, cfg.MaxValueBytes = -1, -1, -1
	return cfg
}

// Open starts an engine whose changes are journaled in cfg.Journal, after
// loading the state the journal holds: its newest snapshot, then every
// record after it. Sessions whose TTL ran out while the engine was down
// are removed on the loop's first cycle.
func Open(cfg Config) (*Engine, error) {
	if cfg.Journal == nil {
		return New(cfg), nil
	}
	cfg = cfg.withDefaults()
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
	// A snapshot now makes the next start fast, and lets the journal drop
	// what it could not replay (journal.Options.TruncateCorrupt).
	if err := cfg.Journal.Snapshot(st.capture().write, true); err != nil {
		return nil, fmt.Errorf("engine: start snapshot: %w", err)
	}
	return start(cfg, st), nil
}

// commit makes the cycle's records durable. It runs on the loop, after
// apply and before publish.
func (e *Engine) commit(st *state) error {
	recs := st.takeRecords()
	if len(recs) == 0 {
		return nil
	}
	due, err := e.cfg.Journal.Append(recs)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if due {
		e.snapshot(st, false)
	}
	return nil
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
