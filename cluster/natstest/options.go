package natstest

import (
	"crypto/tls"

	"github.com/nats-io/nats-server/v2/server"
)

// An Option changes every server's options before it starts: what a test
// of a limit or of security needs from the NATS servers.
type Option func(*server.Options)

// MaxPayload sets the largest message the servers take (max_payload;
// the servers of Start take 8 MiB by default), so that a test of the
// limit needs no large writes.
func MaxPayload(n int32) Option {
	return func(o *server.Options) { o.MaxPayload = n }
}

// TLS makes the servers take only TLS client connections with cfg (its
// certificate; with ClientAuth set to tls.RequireAndVerifyClientCert and
// ClientCAs, mutual TLS). Routes between the servers stay plain, so use
// it with one server or mind that only clients are checked.
func TLS(cfg *tls.Config) Option {
	return func(o *server.Options) {
		o.TLS = true
		o.TLSConfig = cfg
		o.TLSVerify = cfg.ClientAuth == tls.RequireAndVerifyClientCert
		o.TLSTimeout = 2
	}
}
