package grpcapi

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
)

// encodedMessage is a message the watch streams encoded themselves
// (wire.go). The bytes must not change after SendMsg, which may return
// before the transport wrote them.
//
// With ServerOption the server's codec sends them as they are. Without it
// they still reach the wire intact: encodedMessage is a proto message too
// (an Empty whose unknown fields are the bytes, which proto.Marshal writes
// verbatim), so gRPC's own codec marshals it at the cost of one copy.
type encodedMessage struct{ b []byte }

// ProtoReflect makes encodedMessage a proto.Message for a server without
// ServerOption: see encodedMessage.
func (m *encodedMessage) ProtoReflect() protoreflect.Message {
	e := &emptypb.Empty{}
	r := e.ProtoReflect()
	r.SetUnknown(m.b)
	return r
}

// ServerOption is the grpc.ServerOption a server serving this package's
// Server should be built with: its codec is gRPC's proto codec, except
// that the watch streams' pre-encoded messages go out without a copy.
// It applies to that server alone; the process-wide "proto" codec that
// every other client and server of the program uses (an etcd client, say)
// is left as it is.
func ServerOption() grpc.ServerOption {
	return grpc.ForceServerCodecV2(codec{proto: encoding.GetCodecV2(grpcproto.Name)})
}

// codec is gRPC's proto codec plus encodedMessage.
type codec struct{ proto encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*encodedMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Name() string { return grpcproto.Name }
