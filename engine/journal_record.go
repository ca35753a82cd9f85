package engine

import (
	"hash/crc32"
	"time"
)

// A record is [CRC-32C of the rest, little-endian][kind][now, Unix ns]
// [tenant?] and then the kind's fields (journal_codec.go encodes them).

// Record kinds. Commands that changed state are journaled as themselves
// (re-applied by the same code at replay); touches and removals (a
// session closed or expired) are
// journaled as their effect, because what caused them (a read, the expiry
// timer) is not itself journaled.
const (
	recCreate   byte = 1
	recRegister byte = 2
	recSet      byte = 3
	recDelete   byte = 4
	recRemove   byte = 5
	recTouch    byte = 6
	// recUpsert is recSet with, per set, its CreateType (upsert.go): a
	// call none of whose sets is an upsert is journaled as recSet, which
	// older logs hold.
	recUpsert byte = 16
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
	j.enc.beginRecord(kind, now, tenant)
	return &j.enc
}

// end seals the record begun last with its checksum.
func (j *journaling) end() {
	j.records = append(j.records, append([]byte(nil), j.enc.sealRecord()...))
}

// beginRecord starts e over with the header of a record of kind for a
// command applied at now by tenant (nil: unscoped). Replicated engines
// (replicated.go) build their records with it too.
func (e *encoder) beginRecord(kind byte, now time.Time, tenant *string) {
	e.buf = append(e.buf[:0], 0, 0, 0, 0, kind) // CRC, filled by sealRecord
	e.varint(now.UnixNano())
	e.bool(tenant != nil)
	if tenant != nil {
		e.string(*tenant)
	}
}

// sealRecord fills in the checksum of the record begun last and returns
// it (e's buffer: copy it to keep it past the next record).
func (e *encoder) sealRecord() []byte {
	b := e.buf
	crc := crc32.Checksum(b[4:], castagnoli)
	b[0], b[1], b[2], b[3] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
	return b
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
		tenant, c = &sc.scope.tenant, sc.command
	}
	switch c := c.(type) {
	case *createSessionCmd:
		if c.err == nil && c.res.created {
			req := c.req
			req.TTL = st.sessions[c.req.ID].ttl // the default may change
			st.j.begin(recCreate, c.now, tenant).createRequest(req)
			st.j.end()
			st.journaled(c.req.ID)
		}
	case *registerCmd:
		// No variable: nothing applied, the caller routes it and sends
		// it again (names.go).
		if c.err == nil && c.res.Variable != nil {
			st.j.begin(recRegister, c.now, tenant).registerRequest(c.req)
			st.j.end()
			st.journaled(c.req.Session)
		}
	case *setManyCmd:
		st.journalSets(c, tenant)
	case *pipelineCmd: // each batch as the SetMany it is
		for _, g := range c.applied() {
			st.journalSets(g, tenant)
		}
	case *deleteCmd:
		if c.err == nil {
			st.j.begin(recDelete, c.now, tenant).deleteRequest(c.session, c.ident)
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
	kind := recSet
	for _, i := range ok {
		if c.req.Sets[i].CreateType != 0 {
			kind = recUpsert
		}
	}
	e := st.j.begin(kind, c.now, tenant)
	e.string(c.req.Session)
	e.bool(c.req.Atomic)
	e.uvarint(uint64(len(ok)))
	for _, i := range ok {
		e.setRequest(c.req.Sets[i], kind == recUpsert)
	}
	st.j.end()
	st.journaled(c.req.Session)
}

// The bodies of the records of commands, which the journal and a
// replicated engine's proposals share: replay and ApplyLogged decode them
// alike (journal_replay.go).

// createRequest encodes a recCreate record's body; req.TTL is the
// session's, the default applied.
func (e *encoder) createRequest(req CreateSessionRequest) {
	e.string(req.ID)
	e.string(req.Incarnation)
	e.string(req.Owner)
	e.metadata(req.Metadata)
	e.varint(int64(req.TTL))
}

// registerRequest encodes a recRegister record's body.
func (e *encoder) registerRequest(r RegisterRequest) {
	e.string(r.Session)
	e.string(r.Name)
	e.uvarint(uint64(r.Type))
	e.value(r.Value)
	e.constraints(r.Constraints)
	e.metadata(r.Metadata)
}

// deleteRequest encodes a recDelete record's body.
func (e *encoder) deleteRequest(session, ident string) {
	e.string(session)
	e.string(ident)
}

// setRequest encodes one set of a recSet or recUpsert record.
func (e *encoder) setRequest(s SetRequest, upsert bool) {
	e.string(s.Variable)
	e.value(s.Value)
	e.metadata(s.Metadata)
	e.string(s.Source)
	e.bool(s.HasExpectedVersion)
	e.varint(s.ExpectedVersion)
	if upsert {
		e.uvarint(uint64(s.CreateType))
	}
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
		st.journalTouch(s)
	}
	st.j.used = st.j.used[:0]
}

// journalTouch journals that s was last used at s.lastUsed: a replay
// touches it then, which sets its deadline where it is.
func (st *state) journalTouch(s *session) {
	if !st.j.on || st.j.replaying {
		return
	}
	e := st.j.begin(recTouch, s.lastUsed, nil)
	e.string(s.id)
	st.j.end()
	s.journaledExpiry = s.expiresAt
}

// takeRecords returns the cycle's records and starts a new list.
func (st *state) takeRecords() [][]byte {
	r := st.j.records
	st.j.records = nil
	return r
}
