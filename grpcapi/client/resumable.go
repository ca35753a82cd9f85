package client

import (
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The ErrorInfo reasons (domain varwatch.v1) a watch end is decided on;
// the server's are grpcapi.Reason*.
const (
	errorDomain        = "varwatch.v1"
	reasonSlowConsumer = "SLOW_CONSUMER"
)

// resumable reports whether a watch that ended with err may reconnect and
// resume from the last revision it delivered: the server will then
// deliver what follows, so trying again makes progress.
//
// That holds for a broken transport and a server shutting down
// (UNAVAILABLE, whatever the reason), for a stream the server ended
// without a status (io.EOF), and for a slow consumer cut off
// (RESOURCE_EXHAUSTED with reason SLOW_CONSUMER). Any other
// RESOURCE_EXHAUSTED is a limit (reason LIMIT_EXCEEDED: too many watch
// streams, an update larger than a message may be, or gRPC's own message
// size limits, which carry no reason): the same request would hit it
// again, so the watch ends with it instead of reconnecting in a loop. The
// decision rests on the ErrorInfo reason, never on the message text.
func resumable(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.ResourceExhausted:
		return reason(err) == reasonSlowConsumer
	}
	return false
}

// reason is the varwatch ErrorInfo reason of a status error, or "".
func reason(err error) string { return errorInfo(err).GetReason() }
