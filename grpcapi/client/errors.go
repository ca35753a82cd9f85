package client

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// ErrIncarnationChanged is wrapped by every *IncarnationChangedError.
var ErrIncarnationChanged = errors.New("client: session incarnation changed")

// reasonIncarnationChanged is the ErrorInfo reason of the server's
// FAILED_PRECONDITION for a watch naming another incarnation
// (grpcapi.ReasonIncarnationChanged; not imported, so that the client
// does not pull in the server).
const reasonIncarnationChanged = "SESSION_INCARNATION_CHANGED"

// IncarnationChangedError ends a watch whose session was deleted and
// created again (or recreated on a server restarted without its data)
// while the watch was away: the session's revisions now belong to another
// history, so nothing can be resumed. Watch again with initial values, or
// set WatchOptions.Resnapshot to have the watch do it.
type IncarnationChangedError struct {
	Session string
	// Watched is the incarnation the watch followed; Current the
	// session's now.
	Watched, Current string
	status           *status.Status
}

func (e *IncarnationChangedError) Error() string {
	return fmt.Sprintf("varwatch: session %q was created again (incarnation %s, the watch followed %s): its revisions are of another history, watch again with initial values",
		e.Session, e.Current, e.Watched)
}

func (e *IncarnationChangedError) Unwrap() error { return ErrIncarnationChanged }

// GRPCStatus keeps status.Code and status.FromError working on the error:
// FAILED_PRECONDITION with the server's ErrorInfo.
func (e *IncarnationChangedError) GRPCStatus() *status.Status { return e.status }

// Reason returns the reason and metadata of the varwatch ErrorInfo
// (domain varwatch.v1) that every error status of a varwatch server
// carries: "SESSION_NOT_FOUND", "VERSION_CONFLICT" with current_version,
// ... (README "Error codes" lists them). Branch on these, never on the
// message. An error that is not such a status (gRPC's own, a connection
// that failed) has reason "".
func Reason(err error) (reason string, metadata map[string]string) {
	info := errorInfo(err)
	return info.GetReason(), info.GetMetadata()
}

// errorInfo returns the varwatch ErrorInfo detail of a status error, or
// nil: every decision on a watch's end reads it, never the message.
func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return info
		}
	}
	return nil
}

// asIncarnationChanged returns err as an *IncarnationChangedError if the
// server refused a watch for naming another incarnation, else nil.
func asIncarnationChanged(err error) *IncarnationChangedError {
	info := errorInfo(err)
	if info.GetReason() != reasonIncarnationChanged {
		return nil
	}
	st, _ := status.FromError(err)
	md := info.GetMetadata()
	return &IncarnationChangedError{Session: md["session_id"], Watched: md["requested_incarnation"],
		Current: md["current_incarnation"], status: st}
}
