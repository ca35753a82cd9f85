package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// DefaultServer is the address client commands use when neither --server
// nor VARWATCH_SERVER says otherwise; it is also serve's default --listen.
const DefaultServer = "127.0.0.1:50051"

// clientFlags are the flags every client command has.
type clientFlags struct {
	server   string
	timeout  time.Duration
	security *securityFlags // TLS and token (client_security.go)
}

// addClientFlags declares --server, --timeout and the TLS and token flags
// on fs. A --server given
// before the command (varwatch --server X get ...) is the default.
func (e *env) addClientFlags(fs *flag.FlagSet) *clientFlags {
	cf := &clientFlags{}
	def := e.server
	if def == "" {
		def = os.Getenv("VARWATCH_SERVER")
	}
	if def == "" {
		def = DefaultServer
	}
	fs.StringVar(&cf.server, "server", def, "server `address` (also $VARWATCH_SERVER)")
	fs.DurationVar(&cf.timeout, "timeout", 10*time.Second, "deadline of each request (not of a watch)")
	cf.security = addSecurityFlags(fs)
	return cf
}

// client is a connection to the server, for one command.
type client struct {
	pb.UnifiedBridgeClient
	conn    *grpc.ClientConn
	addr    string
	timeout time.Duration
	ctx     context.Context
}

// dial connects lazily: a server that is not there shows up as the first
// call's UNAVAILABLE, which callError explains.
func (e *env) dial(cf *clientFlags) (*client, error) {
	opts, err := cf.security.dialOptions()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cf.server, opts...)
	if err != nil {
		return nil, usagef("bad --server %q: %v", cf.server, err)
	}
	return &client{UnifiedBridgeClient: pb.NewUnifiedBridgeClient(conn), conn: conn, addr: cf.server, timeout: cf.timeout, ctx: e.ctx}, nil
}

func (c *client) Close() { _ = c.conn.Close() }

// call returns a context for one request, bounded by --timeout.
func (c *client) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.timeout)
}

// err turns an RPC error into the message varwatch prints: the status
// code in gRPC's canonical spelling, then the server's message, e.g.
// "NOT_FOUND: session not found: session "x" not found".
func (c *client) err(err error) error {
	if err == nil {
		return nil
	}
	s := status.Convert(err)
	msg := codeName(s.Code()) + ": " + s.Message()
	if s.Code() == codes.Unavailable && !strings.HasPrefix(s.Message(), "server is shutting down") {
		msg += fmt.Sprintf(" (is 'varwatch serve' running at %s?)", c.addr)
	}
	return fmt.Errorf("%s", msg)
}

// codeName spells a code the way the gRPC spec does: NOT_FOUND, ABORTED.
func codeName(c codes.Code) string {
	if c == codes.OK {
		return "OK"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// unary runs fn with a connection and a context bounded by --timeout. A
// gRPC status error fn returns is turned into varwatch's message form.
func (e *env) unary(cf *clientFlags, fn func(ctx context.Context, c *client) error) error {
	c, err := e.dial(cf)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := c.call()
	defer cancel()
	err = fn(ctx, c)
	if _, ok := status.FromError(err); ok && err != nil {
		return c.err(err)
	}
	return err
}
