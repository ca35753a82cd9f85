package cli

import (
	"flag"
	"time"

	"google.golang.org/grpc"

	"github.com/varwatch/varwatch/grpcapi"
)

// Transport bounds of varwatch serve: what one connection may hold before
// any call is authenticated, so that a client without a token cannot pin
// goroutines or memory (the token itself is checked as a stream's headers
// arrive, see grpcapi.Auth).
const (
	// DefaultMaxConcurrentStreams is the streams one connection may have
	// open at once. Above the 1000 watch streams one session may have
	// (--max-watch-streams-per-session), so one client connection can
	// serve a session's watches plus its unary calls; a client past it
	// waits for a stream to end (HTTP/2 flow control), it is not refused.
	DefaultMaxConcurrentStreams = 1024
	// DefaultMaxHeaderListBytes is the largest header list (metadata,
	// uncompressed) the server accepts on a stream. varwatch's own clients
	// send a few hundred bytes (a token, a user agent).
	DefaultMaxHeaderListBytes = 16 << 10
	// DefaultHandshakeTimeout is how long a new connection has to finish
	// its TLS and HTTP/2 handshakes (gRPC's own default is 120s).
	DefaultHandshakeTimeout = 10 * time.Second
)

// serveTransport is serve's per-connection bounds, and the grpc-go
// tuning that decides how a connection carries many streams.
type serveTransport struct {
	maxStreams       uint
	maxHeaderBytes   uint
	handshakeTimeout time.Duration
	tuning           grpcapi.Transport
}

const minWindow = grpcapi.MinWindowBytes

func addServeTransportFlags(fs *flag.FlagSet) *serveTransport {
	st := &serveTransport{}
	fs.UintVar(&st.maxStreams, "max-concurrent-streams", DefaultMaxConcurrentStreams, "streams (calls in flight, watches) one connection may have open at once; more wait for one to end")
	fs.UintVar(&st.maxHeaderBytes, "max-header-list-bytes", DefaultMaxHeaderListBytes, "largest header list (call metadata, uncompressed) a stream may send, in `bytes`")
	fs.DurationVar(&st.handshakeTimeout, "handshake-timeout", DefaultHandshakeTimeout, "how long (a `duration`) a new connection has to finish its TLS and HTTP/2 handshakes; it is closed after it")
	d, t := grpcapi.DefaultTransport(), &st.tuning
	fs.IntVar(&t.WriteBufferBytes, "write-buffer-bytes", d.WriteBufferBytes, "`bytes` a connection gathers before writing to the socket (0: gRPC's 32 KiB)")
	fs.IntVar(&t.InitialWindowBytes, "initial-window-bytes", d.InitialWindowBytes, "HTTP/2 flow-control window the server grants each stream, in `bytes`, at least 65536: how much a client may send on it before the server acknowledges (what watchers receive is bounded by their own windows); 0: gRPC's, which grows with the connection's bandwidth-delay product, a set value stays fixed")
	fs.IntVar(&t.InitialConnWindowBytes, "initial-conn-window-bytes", d.InitialConnWindowBytes, "HTTP/2 flow-control window the server grants each connection, in `bytes`, at least 65536 (0: gRPC's 64 KiB, which grows as the stream windows do; with --initial-window-bytes set it stays at 64 KiB, so set both)")
	return st
}

func (st *serveTransport) validate() error {
	w, cw := st.tuning.InitialWindowBytes, st.tuning.InitialConnWindowBytes
	switch {
	case st.maxStreams == 0:
		return usagef("--max-concurrent-streams must be positive")
	case st.maxStreams > 1<<31:
		return usagef("--max-concurrent-streams must be at most %d", 1<<31)
	case st.maxHeaderBytes < 1<<10:
		return usagef("--max-header-list-bytes must be at least 1024 (gRPC's own headers take a few hundred)")
	case st.maxHeaderBytes > 1<<31:
		return usagef("--max-header-list-bytes must be at most %d", 1<<31)
	case st.handshakeTimeout <= 0:
		return usagef("--handshake-timeout must be positive")
	case st.tuning.WriteBufferBytes < 0:
		return usagef("--write-buffer-bytes must not be negative (0: gRPC's default)")
	case w != 0 && (w < minWindow || w > 1<<31-1):
		return usagef("--initial-window-bytes must be 0 or between %d and %d", minWindow, 1<<31-1)
	case cw != 0 && (cw < minWindow || cw > 1<<31-1):
		return usagef("--initial-conn-window-bytes must be 0 or between %d and %d", minWindow, 1<<31-1)
	}
	return nil
}

func (st *serveTransport) grpcOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(uint32(st.maxStreams)),
		grpc.MaxHeaderListSize(uint32(st.maxHeaderBytes)),
		grpc.ConnectionTimeout(st.handshakeTimeout),
	}
	return append(opts, st.tuning.ServerOptions()...)
}
