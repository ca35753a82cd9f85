package grpcapi

import (
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

// codeFor maps an error to its gRPC code: the code of its reason in the
// error table (reasons.go), which is the one place that decides which
// engine error becomes which status. Every RPC and every per-item result
// of SetVariables goes through it.
//
// A client mistake is never INTERNAL: only an error of no known kind is.
func codeFor(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	reason, _ := classify(err)
	return codeOf(reason)
}

// reasonFor is err's ErrorInfo reason and metadata: those of its status's
// ErrorInfo for a status error, else those of its kind (classify).
func reasonFor(err error) (string, map[string]string) {
	if s, ok := status.FromError(err); ok {
		if info := infoOf(s); info != nil {
			return info.GetReason(), info.GetMetadata()
		}
		return reasonOfCode(s.Code()), nil
	}
	return classify(err)
}

// toStatus turns any error into a gRPC status error with the code and the
// ErrorInfo of its kind (reasons.go). The message is the engine's, less
// the "engine: <kind>: " part: the code already says the kind, and
// "engine" names a Go package a remote client has never heard of. What
// was wrong (which session, which variable, the current version) is kept
// verbatim. A status error passes as it is, given an ErrorInfo if it has
// none.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		if infoOf(s) != nil {
			return err
		}
		return withInfo(s, reasonOfCode(s.Code()), nil).Err()
	}
	reason, meta := classify(err)
	st := withInfo(status.New(codeOf(reason), clipMessage(message(err))), reason, meta)
	return quotaDetails(st, err).Err()
}

// statusError is a status of reason's code with msg and an ErrorInfo.
func statusError(reason, msg string, meta map[string]string) error {
	return withInfo(status.New(codeOf(reason), clipMessage(msg)), reason, meta).Err()
}

// reasonOfCode is the reason of a status built without one (by gRPC, or a
// status error the server passes on): the generic reason of its code.
func reasonOfCode(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return ReasonInvalidArgument
	case codes.Canceled:
		return ReasonCancelled
	case codes.DeadlineExceeded:
		return ReasonDeadlineExceeded
	case codes.Unimplemented:
		return ReasonUnimplemented
	case codes.Unavailable:
		return ReasonShuttingDown
	case codes.ResourceExhausted:
		return ReasonLimitExceeded
	}
	return ReasonInternal
}

// infoOf is the varwatch ErrorInfo of s, or nil.
func infoOf(s *status.Status) *errdetails.ErrorInfo {
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info
		}
	}
	return nil
}

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
	return statusError(ReasonInvalidArgument, fmt.Sprintf(format, args...), nil)
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
	return statusError(ReasonUnimplemented, fmt.Sprintf(format, args...), nil)
}
