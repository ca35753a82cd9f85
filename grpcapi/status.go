package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
)

// codeFor maps an error to its gRPC code. It is the one place that decides
// which engine error becomes which status: every RPC and every per-item
// result of SetVariables goes through it.
//
// A client mistake is never INTERNAL: only an error of no known kind is.
func codeFor(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	switch {
	case errors.Is(err, engine.ErrInvalidArgument):
		return codes.InvalidArgument
	case errors.Is(err, engine.ErrSessionNotFound), errors.Is(err, engine.ErrVariableNotFound):
		return codes.NotFound
	case errors.Is(err, engine.ErrAlreadyExists):
		return codes.AlreadyExists
	case errors.Is(err, engine.ErrVersionConflict):
		return codes.Aborted
	case errors.Is(err, engine.ErrLimitExceeded), errors.Is(err, engine.ErrSlowConsumer):
		return codes.ResourceExhausted
	case errors.Is(err, engine.ErrCompacted):
		return codes.OutOfRange
	case errors.Is(err, engine.ErrIncarnationChanged):
		return codes.FailedPrecondition
	case errors.Is(err, engine.ErrPermissionDenied):
		return codes.PermissionDenied
	case errors.Is(err, engine.ErrClosed), errors.Is(err, engine.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, engine.ErrUnsubscribed):
		return codes.Canceled
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// toStatus turns any error into a gRPC status error with the code from
// codeFor. The message is the engine's, less the "engine: <kind>: " part:
// the code already says the kind, and "engine" names a Go package a remote
// client has never heard of. What was wrong (which session, which
// variable, the current version) is kept verbatim.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	st := limitDetails(status.New(codeFor(err), clipMessage(message(err))), err)
	var ce *engine.CompactedError
	if errors.As(err, &ce) {
		st = withInfo(st, ReasonCompacted, map[string]string{
			"compacted_revision": strconv.FormatInt(ce.Compacted, 10),
			"requested_revision": strconv.FormatInt(ce.Requested, 10),
		})
	}
	var ie *engine.IncarnationError
	if errors.As(err, &ie) {
		st = withInfo(st, ReasonIncarnationChanged, map[string]string{
			"session_id":            ie.Session,
			"current_incarnation":   ie.Current,
			"requested_incarnation": ie.Requested,
		})
	}
	if errors.Is(err, engine.ErrUnavailable) {
		st = withInfo(st, ReasonStorageUnavailable, nil)
	}
	return st.Err()
}

// Reasons of the google.rpc.ErrorInfo details some statuses carry, so that
// clients branch on data rather than parse messages. Domain is ErrorDomain.
const (
	ErrorDomain = "varwatch.v1"
	// ReasonCompacted (OUT_OF_RANGE): metadata compacted_revision is the
	// oldest revision a watch can resume from; requested_revision what was
	// asked.
	ReasonCompacted = "REVISION_COMPACTED"
	// ReasonSlowConsumer (RESOURCE_EXHAUSTED) and ReasonShuttingDown
	// (UNAVAILABLE) end watch streams; metadata resume_revision is the
	// start_revision to resume from without a gap.
	ReasonSlowConsumer = "SLOW_CONSUMER"
	ReasonShuttingDown = "SHUTTING_DOWN"
	// ReasonFilterFailed (ABORTED) ends the streams of a filter chain whose
	// plugin failed with on_error=close; metadata resume_revision as above.
	ReasonFilterFailed = "FILTER_FAILED"
	// ReasonIncarnationChanged (FAILED_PRECONDITION): a watch named a
	// session incarnation other than the live session's, whose revisions
	// are of another history. Metadata session_id, current_incarnation,
	// requested_incarnation. The client must watch again with initial
	// values.
	ReasonIncarnationChanged = "SESSION_INCARNATION_CHANGED"
	// ReasonStorageUnavailable (UNAVAILABLE): the server could not write
	// its log (disk full, say). The call was not acknowledged; writes fail
	// so until the disk works again, reads and watches go on.
	ReasonStorageUnavailable = "STORAGE_UNAVAILABLE"
)

// withInfo attaches an ErrorInfo detail to st.
func withInfo(st *status.Status, reason string, meta map[string]string) *status.Status {
	with, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta})
	if err != nil { // only if the detail cannot be marshalled: keep the plain status
		return st
	}
	return with
}

// kinds are the engine errors whose text message strips.
var kinds = []error{
	engine.ErrInvalidArgument, engine.ErrSessionNotFound, engine.ErrVariableNotFound,
	engine.ErrAlreadyExists, engine.ErrVersionConflict, engine.ErrLimitExceeded,
	engine.ErrCompacted, engine.ErrClosed, engine.ErrPermissionDenied, engine.ErrIncarnationChanged,
	engine.ErrUnavailable,
}

// message is err's text for a client.
func message(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	msg := err.Error()
	for _, kind := range kinds {
		if errors.Is(err, kind) {
			msg = strings.Replace(msg, kind.Error()+": ", "", 1)
			break
		}
	}
	return strings.TrimPrefix(msg, "engine: ")
}

// invalidf is an INVALID_ARGUMENT status for a malformed request: the
// adapter's own checks (missing oneof, unknown enum, bad duration) answer
// with it before the engine is asked.
func invalidf(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, clipMessage(fmt.Sprintf(format, args...)))
}

// MaxMessageBytes bounds a status message. Messages quote what the client
// sent (the engine cuts each quoted identifier or value at
// engine.MaxQuoted bytes); this is the net under everything else, since
// gRPC clients refuse trailers past a few KiB (grpcio: 8 KiB of metadata)
// and would see INTERNAL instead of the real code.
const MaxMessageBytes = 1024

// clipMessage cuts msg to MaxMessageBytes at a rune boundary, saying how
// long it was.
func clipMessage(msg string) string {
	if len(msg) <= MaxMessageBytes {
		return msg
	}
	cut := MaxMessageBytes
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…(" + strconv.Itoa(len(msg)) + " bytes)"
}

// unimplementedf is an UNIMPLEMENTED status for a request field that is in
// the wire contract but not served yet.
func unimplementedf(format string, args ...any) error {
	return status.Error(codes.Unimplemented, clipMessage(fmt.Sprintf(format, args...)))
}
