package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// natsOptions are the connection options the --cluster-tls-* and
// --cluster-creds flags ask for (either TLS flag makes TLS required: no
// plain-text fallback with a server that offers none). They are checked
// here, so that a missing or malformed file fails the start naming its
// flag; nats.go reads the files again at every (re)connect, so that
// certificates and credentials rotated on disk are picked up without a
// restart.
func (c *serveCluster) natsOptions() ([]nats.Option, error) {
	var opts []nats.Option
	// nats.go would parse these files too when applying its options, but
	// its errors name neither the flag nor what the file lacks.
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--cluster-tls-ca: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cluster-tls-ca %s: no PEM certificate in it", c.tlsCA)
		}
		opts = append(opts, nats.RootCAs(c.tlsCA))
	}
	if c.tlsCert != "" {
		if _, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey); err != nil {
			return nil, fmt.Errorf("--cluster-tls-cert/--cluster-tls-key: %w", err)
		}
		opts = append(opts, nats.ClientCert(c.tlsCert, c.tlsKey))
	}
	if c.creds != "" {
		// UserCredentials reads its file only when connecting.
		contents, err := os.ReadFile(c.creds)
		if err != nil {
			return nil, fmt.Errorf("--cluster-creds: %w", err)
		}
		if err := checkCreds(contents); err != nil {
			return nil, fmt.Errorf("--cluster-creds %s: %w", c.creds, err)
		}
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	return opts, nil
}

// checkCreds checks that a credentials file's contents hold a user nkey
// seed and a user JWT.
func checkCreds(contents []byte) error {
	if _, err := nkeys.ParseDecoratedUserNKey(contents); err != nil {
		return fmt.Errorf("no user nkey seed in it: %w", err)
	}
	// ParseDecoratedJWT returns the first decorated block, or the whole
	// file when it has none: only decoding it tells a user JWT.
	token, err := nkeys.ParseDecoratedJWT(contents)
	if err == nil {
		_, err = jwt.DecodeUserClaims(token)
	}
	if err != nil {
		return fmt.Errorf("no user JWT in it: %w", err)
	}
	return nil
}

// explainConnect adds to a failure to reach the NATS servers what it
// most likely means for this node's flags: the errors of crypto/tls and
// nats.go name the failure, not the flag to change.
func (c *serveCluster) explainConnect(err error) error {
	var unknownCA x509.UnknownAuthorityError
	var badName x509.HostnameError
	var op *net.OpError
	var hint string
	switch {
	case errors.As(err, &unknownCA) && c.tlsCA != "":
		hint = "the NATS servers' certificate is not signed by the CA in --cluster-tls-ca " + c.tlsCA
	case errors.As(err, &unknownCA):
		hint = "the NATS servers' certificate is not signed by a CA this system trusts: name theirs with --cluster-tls-ca"
	case errors.As(err, &badName):
		hint = "the NATS servers' certificate does not name the host --cluster connects to"
	case errors.Is(err, nats.ErrSecureConnWanted):
		hint = "the NATS servers do not offer TLS, which --cluster-tls-* asks for"
	case errors.Is(err, nats.ErrAuthorization) && c.creds == "":
		hint = "the NATS servers want credentials: give a credentials file with --cluster-creds"
	case errors.Is(err, nats.ErrAuthorization):
		hint = "the NATS servers refused the credentials in --cluster-creds " + c.creds
	case (errors.Is(err, nats.ErrTLS) || errors.As(err, &op) && op.Op == "remote error") && c.tlsCert == "":
		// A server that wants a client certificate ends the handshake,
		// or the connection right after it.
		hint = "the NATS servers may want a client certificate: give one with --cluster-tls-cert and --cluster-tls-key"
	case errors.Is(err, nats.ErrTLS) || errors.As(err, &op) && op.Op == "remote error":
		hint = "the NATS servers refused the TLS handshake: is --cluster-tls-cert signed by a CA they trust?"
	default:
		return err
	}
	return fmt.Errorf("%w (%s)", err, hint)
}
