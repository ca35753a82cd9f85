package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// probeTimeout bounds the connection diagnose opens and its handshake:
// a server that accepted but stays silent that long is left undiagnosed.
const probeTimeout = 2 * time.Second

// diagnose explains an UNAVAILABLE that no server explained: it opens its
// own connection to the address and offers it a TLS handshake, which
// tells apart nothing listening, a TLS server spoken to in plaintext, and
// a plaintext server spoken to with TLS. gRPC's own error for the last
// two reads like a dead server ("error reading server preface: EOF"), and
// its wording is no contract, so the answer comes from the probe, never
// from the message.
func diagnose(ctx context.Context, target, addr string, usedTLS bool) string {
	notRunning := fmt.Sprintf("is 'varwatch serve' running at %s?", addr)
	network, address, ok := probeAddress(target)
	if !ok {
		return notRunning
	}
	switch probeTLS(ctx, network, address) {
	case probeTLSServer:
		if !usedTLS {
			return fmt.Sprintf("the server at %s speaks TLS: pass --tls, with --tls-ca FILE unless its certificate is from a public CA", addr)
		}
		return fmt.Sprintf("a TLS server answers at %s, but the gRPC connection to it failed", addr)
	case probePlaintextServer:
		if usedTLS {
			return fmt.Sprintf("the server at %s does not speak TLS: drop --tls and the other --tls flags, and unset $VARWATCH_TLS*", addr)
		}
		return fmt.Sprintf("a server answers at %s, but the gRPC connection to it failed", addr)
	}
	return notRunning
}

// probeAddress is the network address gRPC dials for target, when it is
// one diagnose can dial itself.
func probeAddress(target string) (network, address string, ok bool) {
	switch {
	case strings.HasPrefix(target, "unix-abstract:"):
		return "unix", "@" + strings.TrimPrefix(target, "unix-abstract:"), true
	case strings.HasPrefix(target, "unix://"):
		return "unix", strings.TrimPrefix(target, "unix://"), true
	case strings.HasPrefix(target, "unix:"):
		return "unix", strings.TrimPrefix(target, "unix:"), true
	case strings.HasPrefix(target, "dns:///"):
		target = strings.TrimPrefix(target, "dns:///")
	case strings.Contains(target, ":/"):
		return "", "", false // another resolver: its addresses are its own
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		return "", "", false
	}
	return "tcp", target, true
}

// probeResult is what a TLS handshake attempt showed about a server.
type probeResult int

const (
	probeNoServer        probeResult = iota // nothing accepted the connection
	probeTLSServer                          // it answered the handshake as TLS
	probePlaintextServer                    // it answered with something else, or hung up on it
	probeUnknown                            // it accepted but said nothing in time
)

// probeTLS connects to address and starts a TLS handshake. The server's
// certificate is not checked: the probe sends nothing but a ClientHello
// and only looks at what kind of answer comes back.
func probeTLS(ctx context.Context, network, address string) probeResult {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return probeNoServer
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // a probe: nothing is sent after the handshake
	err = tc.HandshakeContext(ctx)
	var recordErr tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case err == nil, errors.As(err, &alert):
		return probeTLSServer
	case errors.As(err, &recordErr):
		return probePlaintextServer // a plaintext gRPC server sends its SETTINGS frame first
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return probePlaintextServer // a TLS server would have answered, if only with an alert
	}
	return probeUnknown
}
