package httpapi

import (
	"errors"
	"io"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// unaryMethods are the unary RPCs by method name, from the generated
// service descriptor: an RPC added to the .proto is served here with no
// change to this package.
var unaryMethods = func() map[string]grpc.MethodDesc {
	m := map[string]grpc.MethodDesc{}
	for _, md := range pb.UnifiedBridge_ServiceDesc.Methods {
		m[md.MethodName] = md
	}
	return m
}()

// jsonIn is how request bodies are read: proto field names or their JSON
// (lowerCamel) names, and an unknown field is an error rather than
// silently ignored (a misspelt "expected_version" must not become an
// unconditional write).
var jsonIn = protojson.UnmarshalOptions{}

// serveUnary serves POST /v1/{method}: the body is the method's request
// message as JSON (empty: all fields unset), the answer its response
// message, or a google.rpc.Status with the HTTP status of its code.
//
// The token is checked before the body is read, as gRPC checks it before
// reading a request. The method's generated handler then decodes the body
// with the decoder it is given and calls the grpcapi.Server method: the
// exact code path of a gRPC call after its interceptors.
func (h *Handler) serveUnary(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("method")
	md, ok := unaryMethods[name]
	if !ok {
		writeStatus(w, status.Errorf(codes.Unimplemented, "unknown method %q: POST /v1/{Method} with a unary RPC of varwatch.v1.UnifiedBridge (Ping, SetVariable, ...)", clip(name)))
		return
	}
	ctx, err := h.callContext(r, name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	if !wantsJSON(r) {
		writeStatus(w, invalidf("Content-Type %q: the body must be application/json", clip(r.Header.Get("Content-Type"))))
		return
	}
	decode := func(m any) error { return h.readJSON(w, r, m.(proto.Message)) }
	resp, err := md.Handler(h.cfg.API, ctx, decode, nil)
	if err != nil {
		writeStatus(w, err)
		return
	}
	writeMessage(w, resp.(proto.Message))
}

// readJSON decodes r's body, at most MaxRequestBytes of it, into m. Its
// errors are gRPC statuses: RESOURCE_EXHAUSTED for a body over the limit,
// as gRPC answers a message over its receive limit, else INVALID_ARGUMENT.
func (h *Handler) readJSON(w http.ResponseWriter, r *http.Request, m proto.Message) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxRequestBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return status.Errorf(codes.ResourceExhausted, "request body larger than %d bytes", tooBig.Limit)
	case err != nil:
		return status.Errorf(codes.InvalidArgument, "reading the request body: %v", err)
	case len(body) == 0:
		return nil
	}
	if err := jsonIn.Unmarshal(body, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "request body is not a JSON %s: %v", m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// clip cuts what a client sent before an error message quotes it.
func clip(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
