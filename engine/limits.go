package engine

import (
	"fmt"
	"time"
)

// Limit names. Each is the name a *LimitError carries, the key of
// Stats.LimitRejections and, with dashes for underscores, the flag of
// `varwatch serve` that sets it.
const (
	// LimitSessions bounds the live sessions of the engine
	// (Config.MaxSessions).
	LimitSessions = "max_sessions"
	// LimitVariablesPerSession bounds the variables of one session
	// (Config.MaxVariablesPerSession).
	LimitVariablesPerSession = "max_variables_per_session"
	// LimitValueBytes bounds one value's payload (Config.MaxValueBytes;
	// see ValueBytes).
	LimitValueBytes = "max_value_bytes"
	// LimitTenantSessions, LimitTenantVariables and LimitTenantBytes bound
	// what the sessions of one tenant hold together (Quota, quota.go).
	LimitTenantSessions  = "tenant_max_sessions"
	LimitTenantVariables = "tenant_max_variables"
	LimitTenantBytes     = "tenant_max_bytes"
	// LimitMetadataEntries bounds the entries of one metadata map: a
	// session's, a variable's (merged over its sets) and one request's
	// (Config.MaxMetadataEntries).
	LimitMetadataEntries = "max_metadata_entries"
	// LimitMetadataKeyBytes and LimitMetadataValueBytes bound one entry's
	// key and value (Config.MaxMetadataKeyBytes, MaxMetadataValueBytes).
	LimitMetadataKeyBytes   = "max_metadata_key_bytes"
	LimitMetadataValueBytes = "max_metadata_value_bytes"
	// LimitMetadataBytes bounds the key and value bytes of one metadata
	// map, as LimitMetadataEntries its entries (Config.MaxMetadataBytes).
	LimitMetadataBytes = "max_metadata_bytes"
	// LimitSessionMetadataBytes bounds the key and value bytes of a
	// session's metadata and all its variables' together
	// (Config.MaxSessionMetadataBytes).
	LimitSessionMetadataBytes = "max_session_metadata_bytes"
	// LimitSendMessageBytes refuses a write whose watch update, or whose
	// answer, would not fit in one message of the transport
	// (Config.MaxSendMessageBytes; see updateBytes).
	LimitSendMessageBytes = "max_send_message_bytes"
)

// Default limits: what a zero Config field means. A negative field means
// no limit.
const (
	DefaultMaxSessions             = 10000
	DefaultMaxVariablesPerSession  = 10000
	DefaultMaxValueBytes           = 1 << 20
	DefaultMaxMetadataEntries      = 256
	DefaultMaxMetadataKeyBytes     = 256
	DefaultMaxMetadataValueBytes   = 16 << 10
	DefaultMaxMetadataBytes        = 64 << 10
	DefaultMaxSessionMetadataBytes = 16 << 20
	// DefaultMaxSendMessageBytes is gRPC's default receive limit, which
	// clients have unless they raise it.
	DefaultMaxSendMessageBytes = 4 << 20
)

// LimitError is the error of a request that would take the engine past a
// configured limit. It wraps ErrLimitExceeded. The request changed
// nothing: a registration that would exceed registers nothing, an atomic
// multi-set with one oversized value applies none of its sets.
type LimitError struct {
	// Limit names the limit (LimitSessions, ...).
	Limit string
	// Value is the configured limit.
	Value int64
	// Detail says what was asked: "session "s" has 10000 variables".
	Detail string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: %s (limit %s=%d)", ErrLimitExceeded.Error(), e.Detail, e.Limit, e.Value)
}

func (e *LimitError) Unwrap() error { return ErrLimitExceeded }

// limitNames are the engine's limits, indexed by the lim constants (the
// per-limit rejection counters).
var limitNames = [...]string{LimitSessions, LimitVariablesPerSession, LimitValueBytes,
	LimitTenantSessions, LimitTenantVariables, LimitTenantBytes,
	LimitMetadataEntries, LimitMetadataKeyBytes, LimitMetadataValueBytes, LimitMetadataBytes,
	LimitSessionMetadataBytes, LimitSendMessageBytes}

const (
	limSessions = iota
	limVariables
	limValueBytes
	limTenantSessions
	limTenantVariables
	limTenantBytes
	limMetaEntries
	limMetaKey
	limMetaValue
	limMetaBytes
	limSessionMeta
	limSendMessage
)

// limitDefaults fills the limit fields of c: zero is the default,
// negative stays (no limit).
func (c *Config) limitDefaults() {
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxVariablesPerSession == 0 {
		c.MaxVariablesPerSession = DefaultMaxVariablesPerSession
	}
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = DefaultMaxValueBytes
	}
	c.TenantQuota = c.TenantQuota.or(Quota{
		MaxSessions:  DefaultTenantMaxSessions,
		MaxVariables: DefaultTenantMaxVariables,
		MaxBytes:     DefaultTenantMaxBytes,
	})
	for _, f := range []struct {
		p   *int
		def int
	}{
		{&c.MaxMetadataEntries, DefaultMaxMetadataEntries},
		{&c.MaxMetadataKeyBytes, DefaultMaxMetadataKeyBytes},
		{&c.MaxMetadataValueBytes, DefaultMaxMetadataValueBytes},
		{&c.MaxMetadataBytes, DefaultMaxMetadataBytes},
		{&c.MaxSessionMetadataBytes, DefaultMaxSessionMetadataBytes},
		{&c.MaxSendMessageBytes, DefaultMaxSendMessageBytes},
	} {
		if *f.p == 0 {
			*f.p = f.def
		}
	}
}

// over reports whether n is past limit (negative: no limit).
func over(n, limit int) bool { return limit >= 0 && n > limit }

// refuse counts a hit of limit lim and builds its error.
func (st *state) refuse(lim, value int, format string, args ...any) error {
	if st.j.replaying { // a journaled change passed its limits (replayConfig)
		return nil
	}
	st.counts.limits[lim]++
	return &LimitError{Limit: limitNames[lim], Value: int64(value), Detail: fmt.Sprintf(format, args...)}
}

// checkSessionLimit is called before a session is created. Sessions past
// their TTL are removed first, so a full server whose sessions expired
// takes new ones at once, not at the next timer tick.
func (st *state) checkSessionLimit(now time.Time) error {
	limit := st.cfg.MaxSessions
	if limit < 0 || len(st.sessions) < limit {
		return nil
	}
	st.expireDue(now)
	if len(st.sessions) < limit {
		return nil
	}
	return st.refuse(limSessions, limit, "the server holds %d sessions", len(st.sessions))
}

// checkVariableLimit is called before a variable is added to s.
func (st *state) checkVariableLimit(s *session) error {
	limit := st.cfg.MaxVariablesPerSession
	if limit < 0 || len(s.vars) < limit {
		return nil
	}
	return st.refuse(limVariables, limit, "session %q has %d variables", s.id, len(s.vars))
}

// checkValue refuses a value whose payload is over Config.MaxValueBytes.
func (st *state) checkValue(v Value) error {
	if limit := st.cfg.MaxValueBytes; limit < 0 || ValueBytes(v) <= limit {
		return nil
	}
	return st.refuseValue(v)
}

// refuseValue is checkValue's error.
func (st *state) refuseValue(v Value) error {
	return st.refuse(limValueBytes, st.cfg.MaxValueBytes, "%s value of %d bytes", v.typ, ValueBytes(v))
}

// setPlan is a checked set: its variable, and the sizes the set leaves.
type setPlan struct {
	slot    *varSlot
	meta    metaStats         // the variable's metadata, merged
	merged  map[string]string // that metadata, if merged off the loop
	setMeta metaStats         // the request's own metadata
	answer  int               // wire bytes the set adds to its answer
	create  *createPlan       // not nil: the set creates its variable (upsert.go)
	// wire and mem are the set's value's valueWire and Value.size.
	wire, mem int
}

// checkSet is session.checkSet behind the limits. The value size limit
// comes first because it is cheap; then the metadata, and last the size
// of the update the set would publish, which must fit in one message:
// applied, a larger one would cut off every watcher of the variable and
// fail the answer of a write that happened. pending is how many metadata
// bytes the earlier sets of an atomic call add to the session; budget is
// what the call may still merge on the loop (see needChecks).
func (st *state) checkSet(s *session, set *SetRequest, pre *checked, f found, pending int, budget *int) (setPlan, error) {
	if err := st.checkValue(set.Value); err != nil {
		return setPlan{}, err
	}
	slot, err := s.checkSet(set, pre, f)
	if err != nil {
		return setPlan{}, err
	}
	cur := slot.cur
	if err := st.reportMetadata(pre.metaLim, pre.metaErr); err != nil {
		return setPlan{}, err
	}
	setMeta := pre.meta
	var merged metaStats
	var mergedMap map[string]string
	switch c := mergeCost(cur, set.Metadata); {
	case c == 0:
		merged = cur.meta
	case pre.base == cur:
		merged, mergedMap = pre.mergedStats, pre.merged
	case c <= *budget:
		*budget -= c
		merged = cur.meta.merged(cur.Metadata, set.Metadata)
	default: // an earlier set of this call wrote the variable
		return setPlan{}, errorf(ErrVersionConflict, "variable %s was written by an earlier update of this call after its metadata was merged; send this update again", truncQuote(cur.Name))
	}
	if err := st.checkMerged(s, cur.Name, merged, merged.bytes-cur.meta.bytes, pending); err != nil {
		return setPlan{}, err
	}
	wire := valueWire(set.Value)
	update, next := slot.setWire(set, wire, merged, setMeta)
	if over(update, st.maxUpdate()) {
		return setPlan{}, st.refuseMessage("the update of variable %s would take about %d bytes encoded", truncQuote(cur.Name), update)
	}
	return setPlan{slot: slot, meta: merged, merged: mergedMap, setMeta: setMeta,
		answer: next + len(set.Variable) + 64, wire: wire, mem: set.Value.size()}, nil
}

// setWire is what set, whose value's valueWire is wire, leaving
// metadata of stats merged and carrying its own of setMeta, makes
// encoded: its watch update (updateWire) and the variable it leaves
// (variableWire), from what the slot keeps rather than from a copy of
// the variable.
func (slot *varSlot) setWire(set *SetRequest, wire int, merged, setMeta metaStats) (update, variable int) {
	variable = slot.wire + len(set.Source) + wire + merged.wire()
	return 128 + len(slot.cur.ID) + variable + slot.curWire + len(set.Source) + setMeta.wire(), variable
}

// maxUpdate is what one update or answer may take encoded (negative: no
// limit).
func (st *state) maxUpdate() int {
	if st.cfg.MaxSendMessageBytes < 0 {
		return -1
	}
	return st.cfg.MaxSendMessageBytes - messageFraming
}

// refuseMessage refuses a write whose update or answer would not fit in
// one message.
func (st *state) refuseMessage(format string, args ...any) error {
	return st.refuse(limSendMessage, st.cfg.MaxSendMessageBytes, format, args...)
}

// ValueBytes is the payload size of v that Config.MaxValueBytes bounds:
// the bytes of a string, choice or module; 4 per embedding element; a
// tensor's data plus 8 per dimension; 8 for a number or boolean.
func ValueBytes(v Value) int {
	switch v.typ {
	case TypeString, TypeChoice, TypeModule:
		return len(v.str)
	case TypeEmbedding:
		return 4 * len(v.embs())
	case TypeTensor:
		if v.ten == nil {
			return 0
		}
		return len(v.ten.Data) + 8*len(v.ten.Shape)
	case 0:
		return 0
	}
	return 8
}
