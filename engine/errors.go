package engine

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Error kinds. Every error the engine returns wraps exactly one of these, so
// callers (the gRPC adapter) branch with errors.Is and map each kind to one
// status code in one place. The message around it names what was wrong.
var (
	ErrInvalidArgument  = errors.New("engine: invalid argument")
	ErrSessionNotFound  = errors.New("engine: session not found")
	ErrVariableNotFound = errors.New("engine: variable not found")
	ErrAlreadyExists    = errors.New("engine: already exists")
	ErrVersionConflict  = errors.New("engine: version conflict")
	ErrLimitExceeded    = errors.New("engine: limit exceeded")
	// ErrCompacted: a resume asked for revisions the history no longer
	// holds; the error is a *CompactedError naming the oldest usable one.
	ErrCompacted = errors.New("engine: revision compacted")
	// ErrIncarnationChanged: a watch named a session incarnation other
	// than the session's; the error is an *IncarnationError.
	ErrIncarnationChanged = errors.New("engine: session incarnation changed")
	ErrClosed             = errors.New("engine: closed")
)

// Reasons a subscription ends. Subscription.Err returns one of them.
var (
	// ErrSessionClosed: the session expired or was cleaned up; the last
	// event delivered was EventSessionClosed.
	ErrSessionClosed = errors.New("engine: session closed")
	// ErrSlowConsumer: the subscriber fell more than its buffer behind and
	// was cut off; resume from the last revision it received.
	ErrSlowConsumer = errors.New("engine: slow consumer")
	// ErrUnsubscribed: the subscriber called Close.
	ErrUnsubscribed = errors.New("engine: unsubscribed")
)

// VersionConflictError is the error of a set whose expected version did not
// match. It wraps ErrVersionConflict.
type VersionConflictError struct {
	Variable string
	Expected int64
	Current  int64
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("engine: version conflict on %q: expected version %d, current version is %d",
		e.Variable, e.Expected, e.Current)
}

func (e *VersionConflictError) Unwrap() error { return ErrVersionConflict }

// IncarnationError is the error of a watch that expected another
// incarnation of its session than the live one: the session was deleted
// and created again (or the server restarted without its data) since the
// caller last saw it. It wraps ErrIncarnationChanged.
type IncarnationError struct {
	Session   string
	Requested string
	Current   string
}

func (e *IncarnationError) Error() string {
	return fmt.Sprintf("engine: session incarnation changed: session %q is incarnation %s, not %s: it was deleted and created again since, so its revisions are of another history; watch again with initial values",
		e.Session, e.Current, e.Requested)
}

func (e *IncarnationError) Unwrap() error { return ErrIncarnationChanged }

// WrongTypeError is the error of a value whose type is not its variable's.
// It wraps ErrInvalidArgument; Variable is the variable's type, Value the
// value's.
type WrongTypeError struct {
	Variable, Value Type
	err             error
}

func (e *WrongTypeError) Error() string { return e.err.Error() }
func (e *WrongTypeError) Unwrap() error { return e.err }

// ConstraintError is the error of a value that violates one of its
// variable's constraints. It wraps ErrInvalidArgument; Constraint is the
// constraint's field name (min, max_length, pattern, choices, ...).
type ConstraintError struct {
	Constraint string
	err        error
}

func (e *ConstraintError) Error() string { return e.err.Error() }
func (e *ConstraintError) Unwrap() error { return e.err }

// errorf builds an error of the given kind with a specific message:
// "<kind>: <message>". Strings and values in args longer than MaxQuoted
// bytes are cut (see clip): messages echo what a client sent, and a
// status message must stay small (gRPC clients refuse trailers past a few
// KiB, and a client gains nothing from its megabyte coming back).
func errorf(kind error, format string, args ...any) error {
	all := make([]any, 0, len(args)+1)
	all = append(all, kind)
	for _, a := range args {
		all = append(all, clipArg(a))
	}
	return fmt.Errorf("%w: "+format, all...)
}

// MaxQuoted is the most of one identifier or value an error message
// quotes; longer ones are cut there and say how long they were.
const MaxQuoted = 128

// clipped is a string cut for a message: Format prints its start as the
// verb asks, then "…(N bytes)".
type clipped struct {
	head string
	n    int
}

func (c clipped) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q…(%d bytes)", c.head, c.n)
		return
	}
	fmt.Fprintf(f, "%s…(%d bytes)", c.head, c.n)
}

// clipArg cuts a long string, or the text of a long Stringer (a Value),
// at a rune boundary; other arguments pass unchanged.
func clipArg(a any) any {
	var s string
	switch v := a.(type) {
	case string:
		s = v
	case error:
		return a
	case fmt.Stringer:
		s = v.String()
	default:
		return a
	}
	if len(s) <= MaxQuoted {
		return a
	}
	cut := MaxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return clipped{head: s[:cut], n: len(s)}
}

// wrapItem names which update of a multi-set failed, keeping err's kind.
func wrapItem(i int, ident string, err error) error {
	return fmt.Errorf("update %d (%q): %w", i, clipArg(ident), err)
}
