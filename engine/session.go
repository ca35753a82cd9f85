package engine

import (
	"maps"
	"strings"
	"sync/atomic"
	"time"
)

// session is one session's state. Owned by the loop goroutine, except
// published, which subscribers read with atomics.
type session struct {
	id          string
	owner       string // the tenant owning it (see WithTenant)
	incarnation string // random, from the create request
	metadata    map[string]string
	createdAt   time.Time
	lastUsed    time.Time
	expiresAt   time.Time
	ttl         time.Duration
	gone        bool // removed from state; its expiry heap entry is stale
	// journaledExpiry is expiresAt as a replay of the journal would set it
	// (see touchSlack).
	journaledExpiry time.Time

	rev int64 // latest revision
	// published is rev as of the loop's last publish: every event up to it
	// has been appended to its subscribers.
	published atomic.Int64
	// dirty: rev moved since the last publish.
	dirty bool

	hist history
	// feed is the events published to its subscriptions; lastView the
	// latest view of it handed out (publishedView).
	feed     feed
	lastView *feedView
	// feedPublished is feed.end as of the last publish: events from it on
	// may still be on their way to subscriptions (a cycle in flight), so
	// sweeping keeps them. Stored after published.
	feedPublished atomic.Int64

	// usage is its owner's entry of state.owners, shared by every session
	// of that owner; bytes is what its variables count toward it.
	usage *usage
	bytes int
	// metaBytes is the key and value bytes of the session's metadata and
	// all its variables' (MaxSessionMetadataBytes).
	metaBytes int

	nextID int64               // last variable id handed out
	vars   map[string]*varSlot // by id
	names  map[string]*varSlot // by name

	subs        map[*Subscription]struct{} // every live subscription
	patternSubs subList                    // subscriptions with a pattern
}

// varSlot is a variable's current state plus who watches it.
type varSlot struct {
	cur      *Variable
	cc       *compiledConstraints
	seq      int64 // the session's nextID when it was registered
	watchers subList
	// bytes is what the variable counts toward its tenant's bytes (see
	// recharge).
	bytes int
	// wire and mem are the parts of the variable's encoded and in-memory
	// sizes that no write changes (fixedWire, fixedMem of its id, name
	// and constraints), and curWire and curMem those of cur's value
	// (valueWire, Value.size), so that a set's size checks are a few adds.
	wire, mem       int
	curWire, curMem int
}

// newSlot returns the slot of v, a new variable (or one restored) with
// constraints cc and registration sequence seq.
func newSlot(v *Variable, cc *compiledConstraints, seq int64) *varSlot {
	return &varSlot{cur: v, cc: cc, seq: seq, wire: fixedWire(v.ID, v.Name, cc.wire), mem: fixedMem(v.ID, v.Name),
		curWire: valueWire(v.Value), curMem: v.Value.size()}
}

func newSession(req CreateSessionRequest, ttl time.Duration, now time.Time) *session {
	return &session{
		id:          req.ID,
		owner:       req.Owner,
		incarnation: req.Incarnation,
		metadata:    maps.Clone(req.Metadata),
		createdAt:   now,
		lastUsed:    now,
		expiresAt:   now.Add(ttl),
		ttl:         ttl,
		vars:        make(map[string]*varSlot),
		names:       make(map[string]*varSlot),
		subs:        make(map[*Subscription]struct{}),
	}
}

// touch records use of the session: its TTL starts over. Commands carry
// the time they were submitted at, so one submitted later may be applied
// first: use never moves back, or the deadline would be earlier than the
// journaled one (only moves forward are journaled) and a replay would
// differ from the live state.
func (s *session) touch(now time.Time) {
	if now.Before(s.lastUsed) {
		now = s.lastUsed
	}
	s.lastUsed = now
	s.expiresAt = now.Add(s.ttl)
}

func (s *session) info() SessionInfo {
	return SessionInfo{
		ID:            s.id,
		Metadata:      maps.Clone(s.metadata),
		CreatedAt:     s.createdAt,
		LastUsedAt:    s.lastUsed,
		ExpiresAt:     s.expiresAt,
		TTL:           s.ttl,
		VariableCount: len(s.vars),
		Revision:      s.rev,
		Owner:         s.owner,
		Incarnation:   s.incarnation,
	}
}

// lookup finds a variable by id or name. Ids are decimal numbers and names
// start with a letter or '_', so an identifier is never ambiguous.
func (s *session) lookup(ident string) *varSlot {
	if isID(ident) {
		return s.vars[ident]
	}
	return s.names[ident]
}

func isID(ident string) bool {
	return ident != "" && ident[0] >= '0' && ident[0] <= '9'
}

// nextRevision starts a new revision for a mutation.
func (s *session) nextRevision() int64 {
	s.rev++
	s.dirty = true
	return s.rev
}

const (
	maxNameLen      = 256
	maxSessionIDLen = 128
)

// checkIdent refuses an identifier (a variable id or name) that cannot
// name any variable because it is longer than any name may be: it is a
// malformed request, not a variable that happens to be missing.
func checkIdent(ident string) error {
	if len(ident) > maxNameLen {
		return errorf(ErrInvalidArgument, "variable identifier is %d bytes long (limit %d)", len(ident), maxNameLen)
	}
	return nil
}

// checkName enforces the variable name rules: 1..256 bytes of letters,
// digits and "_.:/-", starting with a letter or '_' (so it never looks like
// an id, and never contains glob syntax).
func checkName(name string) error {
	switch {
	case name == "":
		return errorf(ErrInvalidArgument, "variable name is empty")
	case len(name) > maxNameLen:
		return errorf(ErrInvalidArgument, "variable name is %d bytes long (limit %d)", len(name), maxNameLen)
	case !(isLetter(name[0]) || name[0] == '_'):
		return errorf(ErrInvalidArgument, "variable name %q must start with a letter or '_'", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isLetter(c) && !isDigit(c) && !strings.ContainsRune("_.:/-", rune(c)) {
			return errorf(ErrInvalidArgument, "variable name %q has %q; allowed are letters, digits and _ . : / -", name, c)
		}
	}
	return nil
}

// checkSessionID enforces session ids: 1..128 bytes of letters, digits and
// "_.:-".
func checkSessionID(id string) error {
	switch {
	case id == "":
		return errorf(ErrInvalidArgument, "session id is empty")
	case len(id) > maxSessionIDLen:
		return errorf(ErrInvalidArgument, "session id is %d bytes long (limit %d)", len(id), maxSessionIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !isLetter(c) && !isDigit(c) && !strings.ContainsRune("_.:-", rune(c)) {
			return errorf(ErrInvalidArgument, "session id %q has %q; allowed are letters, digits and _ . : -", id, c)
		}
	}
	return nil
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
