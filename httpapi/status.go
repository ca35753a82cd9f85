package httpapi

import (
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	// The ErrorInfo details a status carries must resolve to print as JSON.
	_ "google.golang.org/genproto/googleapis/rpc/errdetails"
)

// HTTPStatus is the HTTP status of a gRPC code: the mapping of
// google.rpc.Code's documentation (and grpc-gateway's), so a client that
// only looks at the HTTP status still tells a bad request from a missing
// session from an overloaded server. The body says the gRPC code exactly.
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499 // Client Closed Request
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError // Unknown, Internal, DataLoss
}

// jsonOut is how every response is printed: the proto field names, as the
// .proto file spells them.
var jsonOut = protojson.MarshalOptions{UseProtoNames: true}

// statusJSON is err's gRPC status as google.rpc.Status JSON:
// {"code":3,"message":"...","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo",...}]}.
func statusJSON(err error) []byte {
	b, merr := jsonOut.Marshal(status.Convert(err).Proto())
	if merr != nil { // a detail that does not resolve: keep code and message
		st := status.Convert(err)
		b, _ = jsonOut.Marshal(status.New(st.Code(), st.Message()).Proto())
	}
	return b
}

// writeStatus answers err: the HTTP status of its code, its status as the
// JSON body.
func writeStatus(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(HTTPStatus(status.Code(err)))
	_, _ = w.Write(append(statusJSON(err), '\n'))
}

// writeMessage answers m as JSON with 200 OK.
func writeMessage(w http.ResponseWriter, m proto.Message) {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		writeStatus(w, status.Errorf(codes.Internal, "encoding the response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(append(b, '\n'))
}

func invalidf(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

func notFoundf(format string, args ...any) error {
	return status.Error(codes.NotFound, fmt.Sprintf(format, args...))
}
