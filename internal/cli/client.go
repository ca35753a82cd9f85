package cli

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/grpcapi"
	vwclient "github.com/varwatch/varwatch/grpcapi/client"
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

// DefaultPort is the port of a --server given without one
// (--server localhost): serve's default, not gRPC's 443.
const DefaultPort = "50051"

// defaultPort is DefaultPort, a var so that tests can point a port-less
// --server at a test server.
var defaultPort = DefaultPort

// client is a connection to the server, for one command.
type client struct {
	*vwclient.Client
	addr    string // --server as given, for messages
	target  string // what was dialed (addr with the default port)
	tls     bool   // whether the connection uses TLS
	timeout time.Duration
	ctx     context.Context
}

// dial connects lazily: a server that is not there shows up as the first
// call's UNAVAILABLE, which err explains.
func (e *env) dial(cf *clientFlags) (*client, error) {
	cfg, err := cf.security.config()
	if err != nil {
		return nil, err
	}
	target := dialTarget(cf.server)
	vc, err := vwclient.New(target, cfg.DialOptions()...)
	if err != nil {
		return nil, usagef("bad --server %q: %v", cf.server, err)
	}
	return &client{Client: vc, addr: cf.server, target: target, tls: cfg.TLS != nil, timeout: cf.timeout, ctx: e.ctx}, nil
}

func (c *client) Close() { _ = c.Client.Close() }

// dialTarget is the gRPC target of a --server address: a host without a
// port gets DefaultPort (gRPC's DNS resolver would pick 443), an IPv6
// literal its brackets; host:port, [::1]:port and targets with a scheme
// (unix:/path, dns:///host:port) are used as they are.
func dialTarget(server string) string {
	if strings.Contains(server, ":/") || strings.HasPrefix(server, "unix:") || strings.HasPrefix(server, "unix-abstract:") {
		return server
	}
	if _, _, err := net.SplitHostPort(server); err == nil {
		return server
	}
	host := strings.TrimSuffix(strings.TrimPrefix(server, "["), "]")
	if host == "" {
		return server // let gRPC say what is wrong with it
	}
	if strings.Contains(host, ":") && net.ParseIP(host) == nil {
		return server // not a host, not an IPv6 literal: gRPC's to judge
	}
	return net.JoinHostPort(host, defaultPort)
}

// call returns a context for one request, bounded by --timeout.
func (c *client) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.timeout)
}

// err turns an RPC error into the message varwatch prints: the status
// code in gRPC's canonical spelling, then the server's message, e.g.
// "NOT_FOUND: session "x" not found". An UNAVAILABLE without an
// ErrorInfo is one no server explained (a shutting-down server ends a
// watch with one): diagnose says why, probing the address.
func (c *client) err(err error) error {
	if err == nil {
		return nil
	}
	s := status.Convert(err)
	msg := grpcapi.CodeName(s.Code()) + ": " + s.Message()
	if reason, _ := vwclient.Reason(err); s.Code() == codes.Unavailable && reason == "" {
		msg += " (" + diagnose(c.ctx, c.target, c.addr, c.tls) + ")"
	}
	return fmt.Errorf("%s", msg)
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
