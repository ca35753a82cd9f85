package cli

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/varwatch/varwatch/grpcapi"
)

// KeepaliveMinTime is the shortest interval between a client's keepalive
// pings serve accepts; a client pinging more often is disconnected ("too
// many pings"). The Go client's DefaultKeepalive (30s) is well above it.
const KeepaliveMinTime = 10 * time.Second

// serveSecurity is serve's transport security, authentication and
// keepalive configuration.
type serveSecurity struct {
	tlsCert, tlsKey, tlsClientCA string
	tokenFile                    string
	keepaliveTime                time.Duration
	keepaliveTimeout             time.Duration

	// Set by start, for the HTTP door (serve_http.go), which serves the
	// same certificates and tokens: auth is nil without a token file,
	// serverTLS nil without --tls-cert (it follows SIGHUP reloads).
	auth      *grpcapi.Auth
	serverTLS *tls.Config
}

func addServeSecurityFlags(fs *flag.FlagSet) *serveSecurity {
	ss := &serveSecurity{}
	fs.StringVar(&ss.tlsCert, "tls-cert", "", "PEM `file` of the server certificate (with --tls-key: serve TLS only)")
	fs.StringVar(&ss.tlsKey, "tls-key", "", "PEM `file` of the server certificate's key")
	fs.StringVar(&ss.tlsClientCA, "tls-client-ca", "", "PEM `file` of the CAs client certificates must chain to: requires and verifies a client certificate on every connection (mutual TLS)")
	fs.StringVar(&ss.tokenFile, "auth-token-file", "", "`file` of bearer tokens, one a line (TOKEN, or TOKEN tenant=NAME [max_sessions=N max_variables=N max_bytes=N max_watch_streams=N]); every call but health checks must send one")
	fs.DurationVar(&ss.keepaliveTime, "keepalive-time", 30*time.Second, "ping a client after this `interval` without activity, to find dead connections")
	fs.DurationVar(&ss.keepaliveTimeout, "keepalive-timeout", 10*time.Second, "close a connection whose ping has gone unanswered for this `duration`")
	return ss
}

func (ss *serveSecurity) validate() error {
	switch {
	case (ss.tlsCert == "") != (ss.tlsKey == ""):
		return usagef("--tls-cert and --tls-key go together")
	case ss.tlsClientCA != "" && ss.tlsCert == "":
		return usagef("--tls-client-ca needs --tls-cert and --tls-key")
	case ss.keepaliveTime <= 0:
		return usagef("--keepalive-time must be positive")
	case ss.keepaliveTimeout <= 0:
		return usagef("--keepalive-timeout must be positive")
	}
	return nil
}

// start loads the certificates and tokens and returns the grpc server
// options that apply them. On SIGHUP, until stop is called, the token file
// and the certificate files are loaded again, each all or nothing: what
// fails to load leaves what runs in place, and the outcome is logged.
// Connections already open keep their TLS session; calls in flight keep
// the identity they started with.
func (ss *serveSecurity) start(log hclog.Logger) (opts []grpc.ServerOption, stop func(), err error) {
	opts = []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: ss.keepaliveTime, Timeout: ss.keepaliveTimeout}),
	}
	var current atomic.Pointer[tls.Config]
	if ss.tlsCert != "" {
		tc, err := ss.loadTLS()
		if err != nil {
			return nil, nil, err
		}
		current.Store(tc)
		ss.serverTLS = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return current.Load(), nil
			},
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(ss.serverTLS)))
	}
	var auth *grpcapi.Auth
	if ss.tokenFile != "" {
		tokens, err := grpcapi.LoadTokenFile(ss.tokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--auth-token-file: %w", err)
		}
		auth = grpcapi.NewAuth(tokens, log.Named("auth"))
		ss.auth = auth
		opts = append(opts, auth.ServerOptions()...)
	}
	log.Info("security", "tls", ss.tlsCert != "", "mutual_tls", ss.tlsClientCA != "", "auth", auth != nil,
		"keepalive_time", ss.keepaliveTime, "keepalive_timeout", ss.keepaliveTimeout)
	if auth == nil && ss.tlsCert == "" {
		return opts, func() {}, nil
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-hup:
				if auth != nil {
					if tokens, err := grpcapi.LoadTokenFile(ss.tokenFile); err != nil {
						log.Warn("SIGHUP: token reload failed; the loaded tokens stay", "error", err)
					} else {
						auth.SetTokens(tokens)
						log.Info("SIGHUP: tokens reloaded", "tokens", tokens.Len())
					}
				}
				if ss.tlsCert != "" {
					if tc, err := ss.loadTLS(); err != nil {
						log.Warn("SIGHUP: certificate reload failed; the loaded certificates stay", "error", err)
					} else {
						current.Store(tc)
						log.Info("SIGHUP: certificates reloaded")
					}
				}
			case <-done:
				return
			}
		}
	}()
	stop = func() {
		signal.Stop(hup)
		close(done)
		<-stopped
	}
	return opts, stop, nil
}

// loadTLS reads the certificate, its key and the client CAs.
func (ss *serveSecurity) loadTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(ss.tlsCert, ss.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if ss.tlsClientCA != "" {
		pem, err := os.ReadFile(ss.tlsClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s: no PEM certificate in it", ss.tlsClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
