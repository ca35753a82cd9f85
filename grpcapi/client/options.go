package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Config is how Dial connects. The zero value is a plaintext connection
// without a token, with DefaultKeepalive.
type Config struct {
	// TLS, when set, secures the connection (see LoadTLS). Nil is
	// plaintext.
	TLS *tls.Config
	// Token is sent as "authorization: Bearer <Token>" on every call
	// (see BearerToken). Empty sends none.
	Token string
	// Keepalive is how the connection pings an idle server to find a dead
	// one; the zero value is DefaultKeepalive. Its Time must not be below
	// the server's enforcement minimum (10s for varwatch serve), or the
	// server closes the connection with "too many pings".
	Keepalive keepalive.ClientParameters
}

// DefaultKeepalive pings after 30s without activity, even with no call
// open, and gives up on the connection 10s after an unanswered ping.
// varwatch serve permits it (it refuses pings more often than every 10s).
var DefaultKeepalive = keepalive.ClientParameters{
	Time:                30 * time.Second,
	Timeout:             10 * time.Second,
	PermitWithoutStream: true,
}

// DialOptions are the grpc options that implement cfg.
func (cfg Config) DialOptions() []grpc.DialOption {
	ka := cfg.Keepalive
	if ka == (keepalive.ClientParameters{}) {
		ka = DefaultKeepalive
	}
	opts := []grpc.DialOption{grpc.WithKeepaliveParams(ka)}
	if cfg.TLS != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: cfg.Token, requireTLS: cfg.TLS != nil}))
	}
	return opts
}

// Dial connects to target ("host:port") as cfg says; extra options come
// after cfg's, so they may override them.
func Dial(target string, cfg Config, extra ...grpc.DialOption) (*Client, error) {
	return New(target, append(cfg.DialOptions(), extra...)...)
}

// BearerToken returns per-call credentials sending "authorization: Bearer
// <token>", for grpc.WithPerRPCCredentials.
//
// They do not require transport security, although gRPC's own token
// credentials do: sending a token in plaintext is the operator's choice to
// make, not the library's, and it is the right one on loopback, inside a
// trusted network, or behind a proxy that terminates TLS. Over an untrusted
// network use TLS (Config.TLS), or anyone on the path can read the token.
func BearerToken(token string) credentials.PerRPCCredentials {
	return bearerToken{token: token}
}

type bearerToken struct {
	token string
	// requireTLS: Dial sets it when it configured TLS, so that the token
	// can never go out in plaintext should the transport change.
	requireTLS bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.requireTLS }

// TLSFiles names the PEM files of a TLS client configuration.
type TLSFiles struct {
	// CA is the certificates the server's must chain to; empty uses the
	// system's roots.
	CA string
	// Cert and Key are the client's certificate and key, for servers that
	// require client certificates (mutual TLS). Both or neither.
	Cert, Key string
	// ServerName overrides the name checked in the server's certificate
	// (default: the host of the target).
	ServerName string
}

// LoadTLS builds a client TLS configuration (TLS 1.2 or later) from files.
func LoadTLS(f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("reading the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", f.CA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.Cert != "" && f.Key != "":
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case f.Cert != "" || f.Key != "":
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	return cfg, nil
}

// ReadTokenFile reads a token from a file: its content less surrounding
// whitespace (a trailing newline, typically).
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}
