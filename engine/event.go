package engine

import "time"

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
}

// VariableID returns the id of the variable the event is about, or "".
func (e *Event) VariableID() string {
	if e.Variable == nil {
		return ""
	}
	return e.Variable.ID
}
