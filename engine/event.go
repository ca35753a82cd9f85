package engine

import (
	"sync/atomic"
	"time"
)

// EventType says what an Event reports.
type EventType int

// Event types, in the order a stream typically sees them.
const (
	EventInitialValue EventType = iota + 1
	EventInitialValuesComplete
	EventValueChange
	EventVariableRegistered
	EventVariableDeleted
	EventHeartbeat
	EventSessionClosed
)

var eventNames = [...]string{
	EventInitialValue:          "initial_value",
	EventInitialValuesComplete: "initial_values_complete",
	EventValueChange:           "value_change",
	EventVariableRegistered:    "variable_registered",
	EventVariableDeleted:       "variable_deleted",
	EventHeartbeat:             "heartbeat",
	EventSessionClosed:         "session_closed",
}

// String returns the wire name of the event type ("value_change", ...).
func (t EventType) String() string {
	if t >= EventInitialValue && t <= EventSessionClosed {
		return eventNames[t]
	}
	return "unknown"
}

// Event is one entry of a subscription's stream. Events are immutable once
// published: the same Event value is handed to every subscriber it concerns.
type Event struct {
	Type EventType
	// Revision is the session revision of the change. For initial values
	// and EventInitialValuesComplete it is the snapshot revision; for a
	// heartbeat, every change up to it has been delivered.
	Revision int64
	// Variable is the state after the change (for EventVariableDeleted: the
	// last state). Nil for heartbeat, initial_values_complete and
	// session_closed.
	Variable *Variable
	// OldValue is the value before a change; zero otherwise.
	OldValue Value
	Source   string
	Metadata map[string]string
	Time     time.Time
	// Coalesced is how many value changes this event stands for when a
	// coalescing subscription merged several (0: just itself), and
	// CoalescedFrom the revision of the first of them. OldValue is then
	// the value before that first change.
	Coalesced     int64
	CoalescedFrom int64
	// Incarnation is the session's incarnation, on the events that tell a
	// stream where it stands (EventInitialValuesComplete, EventHeartbeat,
	// EventSessionClosed); empty on the others.
	Incarnation string
	// Memo, when not nil, is shared by every subscription the event was
	// published to (see Memo). Whoever changes a copy of the event must
	// set it to nil.
	Memo *Memo

	bytes int // eventSize, when the loop computed it already; 0: not yet
}

// Coalesce returns next with prev, an earlier waiting change of the same
// variable, merged into it: next's value, prev's old value (the value
// before the first merged change), the count of changes it now stands for
// and the revision of the first. The result is no longer the published
// event, so it has no Memo. Coalescing subscriptions and filtered streams
// both merge with it.
func Coalesce(prev, next Event) Event {
	next.OldValue = prev.OldValue
	next.Memo = nil
	next.Coalesced = max(prev.Coalesced, 1) + 1
	next.CoalescedFrom = prev.Revision
	if prev.Coalesced > 0 {
		next.CoalescedFrom = prev.CoalescedFrom
	}
	return next
}

// Memo is scratch space shared by every subscription an event was
// published to, for work a consumer derives from the event alone and
// would otherwise repeat for each subscription: grpcapi keeps the event's
// wire encodings in it (one slot per view of the update), so a change
// watched by 10,000 streams is encoded once per view, not 10,000 times.
// The memo's address also identifies the published change: two
// subscriptions' events with the same Memo are the same change.
//
// The loop gives a memo only to value changes with more than one watcher
// (for one, it would be pure cost). Events a subscription changes
// (coalescing merges) or makes (initial values, heartbeats) have none, and
// history keeps none.
//
// # Notes
//
// Safe for concurrent use. The bytes stored must never change afterwards:
// every reader shares them.
type Memo struct {
	slots [MemoSlots]atomic.Pointer[[]byte]
}

// MemoSlots is how many independent byte slices a Memo keeps; what each
// slot holds is the consumer's choice.
const MemoSlots = 2

// Load returns the bytes stored in slot, or nil.
func (m *Memo) Load(slot int) []byte {
	if p := m.slots[slot].Load(); p != nil {
		return *p
	}
	return nil
}

// Store keeps b in slot for later readers; concurrent consumers derive the
// same bytes, so the last store winning is fine.
func (m *Memo) Store(slot int, b []byte) { m.slots[slot].Store(&b) }

// VariableID returns the id of the variable the event is about, or "".
func (e *Event) VariableID() string {
	if e.Variable == nil {
		return ""
	}
	return e.Variable.ID
}
