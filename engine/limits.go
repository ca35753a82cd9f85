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
)

// Default limits: what a zero Config field means. A negative field means
// no limit.
const (
	DefaultMaxSessions            = 10000
	DefaultMaxVariablesPerSession = 10000
	DefaultMaxValueBytes          = 1 << 20
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
var limitNames = [...]string{LimitSessions, LimitVariablesPerSession, LimitValueBytes}

const (
	limSessions = iota
	limVariables
	limValueBytes
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
}

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
	limit := st.cfg.MaxValueBytes
	if limit < 0 {
		return nil
	}
	if n := ValueBytes(v); n > limit {
		return st.refuse(limValueBytes, limit, "%s value of %d bytes", v.typ, n)
	}
	return nil
}

// checkSet is session.checkSet behind the value size limit, which is
// checked first because it is cheap and spares a constraint check (a
// regexp, say) of an oversized value.
func (st *state) checkSet(s *session, set SetRequest) (*varSlot, error) {
	if err := st.checkValue(set.Value); err != nil {
		return nil, err
	}
	return s.checkSet(set)
}

// ValueBytes is the payload size of v that Config.MaxValueBytes bounds:
// the bytes of a string, choice or module; 4 per embedding element; a
// tensor's data plus 8 per dimension; 8 for a number or boolean.
func ValueBytes(v Value) int {
	switch v.typ {
	case TypeString, TypeChoice, TypeModule:
		return len(v.str)
	case TypeEmbedding:
		return 4 * len(v.emb)
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
