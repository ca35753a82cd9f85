package engine

import (
	"fmt"
	"hash/crc32"
	"time"
)

// replay applies one journaled record to st.
func (st *state) replay(rec []byte) error {
	kind, now, tenant, d, err := parseRecord(rec)
	if err != nil {
		return err
	}
	var c command
	switch kind {
	case recNoop:
		return d.err
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
		if c = decodeCommand(kind, now, d); c == nil {
			return fmt.Errorf("%w: unknown record kind %d", errCorrupt, kind)
		}
	}
	if err := d.finished(); err != nil {
		return err
	}
	if tenant != nil {
		c = &scoped{command: c, scope: scope{tenant: *tenant}}
	}
	replayApply(st, c)
	if err := replayErr(c); err != nil {
		return fmt.Errorf("replay diverged: a journaled change failed again: %w", err)
	}
	return nil
}

// parseRecord checks rec's checksum and reads its header: its kind, the
// time its command was applied at and its tenant (nil: unscoped). d reads
// the kind's fields.
func parseRecord(rec []byte) (kind byte, now time.Time, tenant *string, d *decoder, err error) {
	if len(rec) < 5 {
		return 0, time.Time{}, nil, nil, fmt.Errorf("%w: record of %d bytes", errCorrupt, len(rec))
	}
	want := uint32(rec[0]) | uint32(rec[1])<<8 | uint32(rec[2])<<16 | uint32(rec[3])<<24
	if got := crc32.Checksum(rec[4:], castagnoli); got != want {
		return 0, time.Time{}, nil, nil, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", errCorrupt, want, got)
	}
	d = &decoder{buf: rec[5:]}
	kind = rec[4]
	now = time.Unix(0, d.varint())
	if d.bool() {
		t := d.string()
		tenant = &t
	}
	return kind, now, tenant, d, d.err
}

// decodeCommand decodes the command a record of kind journals (one that
// is journaled as itself), or returns nil for another kind.
func decodeCommand(kind byte, now time.Time, d *decoder) command {
	switch kind {
	case recCreate:
		req := CreateSessionRequest{ID: d.string(), Incarnation: d.string(), Owner: d.string(), Metadata: d.metadata()}
		req.TTL = time.Duration(d.varint())
		return &createSessionCmd{req: req, now: now}
	case recRegister:
		req := RegisterRequest{Session: d.string(), Name: d.string(), Type: Type(d.uvarint()),
			Value: d.value(), Constraints: d.constraints(), Metadata: d.metadata()}
		return &registerCmd{req: req, now: now}
	case recSet, recUpsert:
		req := SetManyRequest{Session: d.string(), Atomic: d.bool()}
		req.Sets = make([]SetRequest, d.length(4))
		for i := range req.Sets {
			req.Sets[i] = SetRequest{Session: req.Session, Variable: d.string(), Value: d.value(),
				Metadata: d.metadata(), Source: d.string(), HasExpectedVersion: d.bool(), ExpectedVersion: d.varint()}
			if kind == recUpsert {
				req.Sets[i].CreateType = Type(d.uvarint())
			}
		}
		return &setManyCmd{req: req, now: now}
	case recDelete:
		return &deleteCmd{session: d.string(), ident: d.string(), now: now}
	}
	return nil
}

// finished reports a decoding error, or bytes left after the record.
func (d *decoder) finished() error {
	if d.err != nil {
		return d.err
	}
	if len(d.buf) != 0 {
		return fmt.Errorf("%w: %d bytes after record", errCorrupt, len(d.buf))
	}
	return nil
}

// replayApply applies c as its caller would: with the checks the caller
// makes off the loop made here (the replay is the loop's only user, so one
// more trip answers whatever a set still needs).
func replayApply(st *state, c command) {
	inner := c
	if sc, ok := c.(*scoped); ok {
		inner = sc.command
	}
	switch ic := inner.(type) {
	case *registerCmd:
		ic.pre = checkRegistration(ic.req, &st.cfg)
	case *setManyCmd:
		ic.req.Sets, ic.pre = precheck(&st.cfg, ic.req.Sets)
		c.apply(st)
		if len(ic.needs) == 0 {
			return
		}
		ic.pre = answerNeeds(ic.req.Sets, ic.pre, ic.needs)
		ic.needs = nil
	}
	c.apply(st)
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
	// The checks made off the loop (offloop.go) read the config, not
	// st.refuse: lift their limits too.
	cfg.MaxMetadataEntries, cfg.MaxMetadataKeyBytes, cfg.MaxMetadataValueBytes = -1, -1, -1
	cfg.MaxMetadataBytes, cfg.MaxSessionMetadataBytes, cfg.MaxSendMessageBytes = -1, -1, -1
	cfg.TenantQuota = Quota{MaxSessions: -1, MaxVariables: -1, MaxBytes: -1}
	return cfg
}
