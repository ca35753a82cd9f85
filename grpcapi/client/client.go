// Package client is the Go client of varwatch's gRPC API: the generated
// UnifiedBridge stub for the unary calls, plus a watch that survives dropped
// connections and slow-consumer cut-offs by resuming from the last revision
// it delivered, with no gap and no duplicate.
package client

import (
	"slices"

	"google.golang.org/grpc"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// Client is a connection to a varwatch server. The embedded stub serves
// every unary RPC (c.SetVariable(ctx, req), ...); Watch adds the resuming
// watch. A Client is safe for concurrent use.
type Client struct {
	pb.UnifiedBridgeClient
	conn *grpc.ClientConn
	mux  *mux // the Watch stream the client's watches share
}

// New connects to target ("host:port") with opts. With no options it uses
// Config{}: a plaintext connection, which suits loopback and trusted
// networks, with DefaultKeepalive. Dial is the simpler way to add TLS and
// a token.
func New(target string, opts ...grpc.DialOption) (*Client, error) {
	if len(opts) == 0 {
		opts = Config{}.DialOptions()
	}
	// The consistency call options (consistency.go) are read here.
	// Clipped: appending must not write into the caller's array.
	opts = append(slices.Clip(opts), grpc.WithChainUnaryInterceptor(unaryConsistency), grpc.WithChainStreamInterceptor(streamConsistency))
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, err
	}
	bridge := pb.NewUnifiedBridgeClient(conn)
	return &Client{UnifiedBridgeClient: bridge, conn: conn, mux: &mux{bridge: bridge}}, nil
}

// Conn returns the underlying connection, for other services (health).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection; watches on it end.
func (c *Client) Close() error { return c.conn.Close() }
