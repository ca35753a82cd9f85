package engine

import "time"

// SessionInfo describes a session at the moment it was read.
type SessionInfo struct {
	ID            string
	Metadata      map[string]string
	CreatedAt     time.Time
	LastUsedAt    time.Time
	ExpiresAt     time.Time
	TTL           time.Duration
	VariableCount int
	// Revision is the session's latest revision.
	Revision int64
	// Owner is the tenant that owns the session ("": none, only unscoped
	// callers may use it). See WithTenant.
	Owner string
	// Incarnation is random, chosen at creation. Revisions are meaningful
	// only together with it: a session deleted and created again under
	// the same ID has a new incarnation and counts revisions from zero.
	Incarnation string
}

// Variable is a variable's state at one revision. The engine never changes
// a *Variable after handing it out (each write makes a new one), so callers
// may keep and share it; they must not modify it either.
type Variable struct {
	ID    string
	Name  string
	Type  Type
	Value Value
	// Constraints is never nil in a variable the engine returns. It is
	// shared by every version of the variable (a write copies the
	// variable, not its constraints): read it, never change it.
	Constraints *Constraints
	Metadata    map[string]string
	// Version counts writes: 1 after registration.
	Version        int64
	CreateRevision int64
	ModRevision    int64
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// Source is who made the last write.
	Source string

	meta metaStats // of Metadata, kept by the loop so no bound walks it
}

// CreateSessionRequest creates a session.
type CreateSessionRequest struct {
	// ID: empty asks the engine to generate one.
	ID       string
	Metadata map[string]string
	// TTL: zero means Config.SessionTTL.
	TTL time.Duration
	// Owner is the tenant owning the new session. A caller scoped with
	// WithTenant always creates sessions owned by its own tenant, whatever
	// Owner says.
	Owner string
	// Incarnation: empty asks the engine to generate one. It is chosen
	// by the caller, not the loop, so that applying a logged request
	// again gives the session the same incarnation.
	Incarnation string
}

// RegisterRequest registers a variable.
type RegisterRequest struct {
	Session     string
	Name        string
	Type        Type
	Value       Value
	Constraints Constraints
	Metadata    map[string]string
}

// SetRequest sets one variable.
type SetRequest struct {
	Session string
	// Variable is an id or a name.
	Variable string
	Value    Value
	// Metadata is merged into the variable's metadata and sent to watchers.
	Metadata map[string]string
	Source   string
	// ExpectedVersion, when HasExpectedVersion, makes the set apply only if
	// the variable's version equals it.
	ExpectedVersion    int64
	HasExpectedVersion bool
	// CreateType, when not zero, makes the set an upsert: a missing
	// variable named Variable is created with this type, no constraints
	// and the set's metadata, its first value the set's, at one revision
	// (see upsert.go). ExpectedVersion 0 then means "only if missing".
	CreateType Type
}

// SetResult is the outcome of one set.
type SetResult struct {
	Variable *Variable
	// Revision is the session revision the write was applied at.
	Revision int64
}

// SetManyRequest sets several variables of one session.
type SetManyRequest struct {
	Session string
	Sets    []SetRequest // their Session fields are ignored
	// Atomic: all sets apply at one revision or none does.
	Atomic bool
}

// SetItemResult is how one set of a SetMany went: Err is nil on success.
type SetItemResult struct {
	SetResult
	Err error
}

// SetManyResult answers SetMany.
type SetManyResult struct {
	Items []SetItemResult
	// Revision is the session revision after the call.
	Revision int64
}

// GetManyResult answers GetMany.
type GetManyResult struct {
	Found    []*Variable // in request order
	Missing  []string    // in request order
	Revision int64
}

// ListResult answers List.
type ListResult struct {
	Variables []*Variable // sorted by name
	Revision  int64
}

// WatchRequest starts a subscription.
type WatchRequest struct {
	Session string
	// Variables are ids or names; each must exist.
	Variables []string
	// Pattern is a glob over names; it also covers variables registered
	// later. Empty Variables and Pattern watch the whole session.
	Pattern string
	// IncludeInitialValues queues one EventInitialValue per watched
	// variable, then EventInitialValuesComplete, before any change.
	IncludeInitialValues bool
	// Resume replays every change after StartRevision, then goes live, with
	// no gap or duplicate at the seam. A revision the history no longer
	// holds is a *CompactedError. Exclusive with IncludeInitialValues.
	Resume        bool
	StartRevision int64
	// Coalesce keeps at most one waiting value change per variable: a new
	// change replaces the waiting one, and says how many changes it stands
	// for. Memory is then bounded by the number of watched variables and
	// the subscription is never cut off as a slow consumer. With Resume,
	// the changes at StartRevision+1 are replayed unmerged: a client
	// resumes from just before a revision it may have received in part and
	// skips what it had, so none of those may be merged into a later one.
	Coalesce bool
	// Buffer caps how many events may wait for the subscriber before it is
	// cut off with ErrSlowConsumer; zero means Config.SubscriptionBuffer.
	Buffer int
	// OnReady, when not nil, is called whenever Ready is signalled: after
	// events were appended or the subscription ended. It lets one consumer
	// serve many subscriptions without a goroutine for each (the gRPC
	// multiplexed watch keeps a list of the ready ones). It is called by
	// the loop and by whoever ends the subscription, so it must be safe for
	// concurrent use and must never block or call the engine.
	OnReady func()
	// Incarnation, when not empty, is the session incarnation the caller
	// expects (a resume always names the one it watched). A session of
	// another incarnation is an *IncarnationError: its revisions are of a
	// different history, so nothing of it may be replayed as a
	// continuation.
	Incarnation string
}
