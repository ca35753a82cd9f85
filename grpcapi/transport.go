package grpcapi

import (
	"google.golang.org/grpc"
)

// Transport is the grpc-go tuning of a server that serves this package:
// how a connection buffers its writes and how much a client may send
// before the server acknowledges. `varwatch serve` takes it from its flags
// (DefaultTransport unless told otherwise); a program that embeds the
// package passes ServerOptions to grpc.NewServer, as the benchmark harness
// does, to serve as serve does.
//
// A zero field is grpc-go's own behaviour.
type Transport struct {
	// WriteBufferBytes is what a connection gathers before it writes to
	// its socket (grpc-go: 32 KiB). A watch response, however many
	// changes it carries, goes out in the writes of this size.
	WriteBufferBytes int
	// InitialWindowBytes and InitialConnWindowBytes are the HTTP/2
	// flow-control windows the server grants each stream and each
	// connection, at least MinWindowBytes: how much a client may send
	// before the server acknowledges (what the server sends is bounded
	// by the client's windows). grpc-go's start at 64 KiB and grow with
	// the connection's measured bandwidth-delay product; setting either
	// fixes both, so a zero connection window beside a set stream window
	// stays at 64 KiB.
	InitialWindowBytes, InitialConnWindowBytes int
}

// MinWindowBytes is HTTP/2's initial window: grpc-go ignores a smaller one.
const MinWindowBytes = 64 << 10

// DefaultTransport is serve's transport unless its flags say otherwise,
// chosen by the fan-out and latency benchmarks (README, Performance).
func DefaultTransport() Transport {
	return Transport{}
}

// ServerOptions are t as grpc.ServerOptions, after ServerOption (the
// codec).
func (t Transport) ServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{ServerOption()}
	if t.WriteBufferBytes > 0 {
		opts = append(opts, grpc.WriteBufferSize(t.WriteBufferBytes))
	}
	if t.InitialWindowBytes > 0 {
		opts = append(opts, grpc.InitialWindowSize(int32(t.InitialWindowBytes)))
	}
	if t.InitialConnWindowBytes > 0 {
		opts = append(opts, grpc.InitialConnWindowSize(int32(t.InitialConnWindowBytes)))
	}
	return opts
}
