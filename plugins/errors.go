package plugins

import (
	"errors"
	"fmt"
)

// Sentinel errors. The gRPC adapter maps them to status codes in one place:
// ErrUnknownFilter and ErrInvalidParams (both carried by *FilterError) to
// INVALID_ARGUMENT, ErrFilterFailed (carried by *FaultError) to the status
// that ends a stream whose filter failed with on_error=close, ErrClosed to
// UNAVAILABLE (shutting down).
var (
	ErrUnknownFilter = errors.New("plugins: unknown filter")
	ErrInvalidParams = errors.New("plugins: invalid filter params")
	ErrFilterFailed  = errors.New("plugins: filter failed")
	ErrClosed        = errors.New("plugins: closed")
)

// FilterError says which filter of a requested chain is wrong and why: a
// client mistake (INVALID_ARGUMENT), never a server fault.
type FilterError struct {
	// Index is the filter's position in the request's chain; -1 when the
	// server-wide default chain is at fault.
	Index int
	Name  string
	// Err is ErrUnknownFilter or ErrInvalidParams.
	Err error
	// Reason is the detail, for params the plugin's own message.
	Reason string
}

func (e *FilterError) Error() string {
	where := fmt.Sprintf("filter %d (%q)", e.Index, e.Name)
	if e.Index < 0 {
		where = fmt.Sprintf("default filter %q", e.Name)
	}
	if e.Reason == "" {
		return fmt.Sprintf("%v: %s", e.Err, where)
	}
	return fmt.Sprintf("%v: %s: %s", e.Err, where, e.Reason)
}

func (e *FilterError) Unwrap() error { return e.Err }

// FaultKind classifies a plugin failure for counters, logs and errors.
type FaultKind uint8

// Fault kinds.
const (
	// FaultTrap: the guest trapped (unreachable, out-of-bounds access,
	// division by zero, stack overflow).
	FaultTrap FaultKind = iota
	// FaultPanic: the guest panicked; a Go plugin's panic aborts the guest
	// after printing "panic: ..." (its message is in the error).
	FaultPanic
	// FaultExit: the guest called proc_exit.
	FaultExit
	// FaultTimeout: the batch outlived the plugin's deadline.
	FaultTimeout
	// FaultMemory: the guest ran into its memory limit.
	FaultMemory
	// FaultMalformed: the output does not follow the ABI (bad pointer,
	// short, wrong count, wrong types, invalid UTF-8).
	FaultMalformed
	// FaultInit: re-creating a faulted instance failed.
	FaultInit
	// FaultUnavailable: the instance is waiting out its restart backoff, so
	// the batch got the on_error policy without running.
	FaultUnavailable
	numFaultKinds
)

var faultNames = [numFaultKinds]string{"trap", "panic", "exit", "timeout", "memory", "malformed", "init", "unavailable"}

// String returns the kind's name as used in logs and Stats.Errors.
func (k FaultKind) String() string {
	if k < numFaultKinds {
		return faultNames[k]
	}
	return fmt.Sprintf("FaultKind(%d)", uint8(k))
}

// FaultError reports that a plugin failed on a batch and its policy is
// on_error=close: the streams using the chain must end. It wraps
// ErrFilterFailed and the underlying cause.
type FaultError struct {
	Plugin string
	Kind   FaultKind
	Err    error
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("%v: %s: %s: %v", ErrFilterFailed, e.Plugin, e.Kind, e.Err)
}

func (e *FaultError) Unwrap() []error { return []error{ErrFilterFailed, e.Err} }

// fault is a plugin failure inside the host before a policy is applied.
type fault struct {
	kind FaultKind
	err  error
}

func (f *fault) Error() string { return f.kind.String() + ": " + f.err.Error() }
func (f *fault) Unwrap() error { return f.err }

// paramsRefused is varwatch_init's non-zero answer: at Acquire it becomes a
// FilterError (INVALID_ARGUMENT), at a restart a FaultInit.
type paramsRefused struct{ msg string }

func (e *paramsRefused) Error() string { return "plugin refused its params: " + e.msg }
