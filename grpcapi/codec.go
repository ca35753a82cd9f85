package grpcapi

import (
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// encodedMessage is a message the watch streams encoded themselves
// (wire.go): the codec sends its bytes as they are. The bytes must not
// change after SendMsg, which may return before the transport wrote them.
type encodedMessage struct{ b []byte }

// codec is gRPC's proto codec plus encodedMessage. It replaces the
// registered "proto" codec at init, rather than being a server option, so
// that every grpc.Server serving this package's Server (the CLI's, a
// test's, an embedder's) sends watch updates correctly without being told
// to; for every other message it is the proto codec itself, on both the
// server and the client side.
type codec struct{ proto encoding.CodecV2 }

func init() {
	encoding.RegisterCodecV2(codec{proto: encoding.GetCodecV2(grpcproto.Name)})
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*encodedMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Name() string { return grpcproto.Name }
