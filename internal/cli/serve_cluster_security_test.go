package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/varwatch/varwatch/cluster/natstest"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// natsTLS is a JetStream server that takes only mutual TLS, with the
// files of the certificates a node needs.
type natsTLS struct {
	nats                      *natstest.Cluster
	ca, other                 *testCA // other signed nothing the server shows
	clientCert, clientKey     string
	strangerCert, strangerKey string // signed by other
}

func startNATSTLS(t *testing.T) *natsTLS {
	t.Helper()
	dir := t.TempDir()
	n := &natsTLS{ca: newTestCA(t, dir, "nats-ca"), other: newTestCA(t, dir, "other-ca")}
	srvCert, srvKey := n.ca.issue(t, "nats-server", true)
	n.clientCert, n.clientKey = n.ca.issue(t, "varwatch-node", false)
	n.strangerCert, n.strangerKey = n.other.issue(t, "stranger", false)
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(n.ca.cert)
	n.nats = natstest.Start(t, 1, natstest.TLS(&tls.Config{Certificates: []tls.Certificate{pair},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}))
	return n
}

// serveFails runs serve --cluster with flags and returns its exit code
// and stderr: for a node that must not start.
func serveFails(t *testing.T, url string, flags ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr strings.Builder
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--cluster", url, "--cluster-connect-timeout", "5s"}, flags...)
	code := Run(ctx, args, io.Discard, &stderr)
	return code, stderr.String()
}

// writeAndRead checks that a node serves: a session, a variable, a set
// and a read of it.
func writeAndRead(t *testing.T, n *clusterNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := n.api.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.api.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: "x",
		Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: 7}}}); err != nil {
		t.Fatal(err)
	}
	v, err := n.api.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "s", VariableIdentifier: "x"})
	if err != nil || v.GetVariable().GetValue().GetIntegerValue() != 7 {
		t.Fatalf("read: %v, %v", v, err)
	}
}

// TestClusterServeTLS runs serve --cluster against a JetStream server that
// takes only mutual TLS: with its CA and a client certificate it signed,
// the node connects and serves; without either, or with files that do
// not load, it fails at start naming the flag to fix.
func TestClusterServeTLS(t *testing.T) {
	n := startNATSTLS(t)
	node := startClusterNode(t, n.nats.URL(), "--cluster-tls-ca", n.ca.file, "--cluster-tls-cert", n.clientCert, "--cluster-tls-key", n.clientKey)
	writeAndRead(t, node)

	plain := natstest.Start(t, 1)
	for _, tc := range []struct {
		name  string
		url   string
		flags []string
		want  []string
	}{
		{"another CA", n.nats.URL(), []string{"--cluster-tls-ca", n.other.file, "--cluster-tls-cert", n.clientCert, "--cluster-tls-key", n.clientKey},
			[]string{"x509: certificate signed by unknown authority", "not signed by the CA in --cluster-tls-ca " + n.other.file}},
		{"the system's roots", n.nats.URL(), nil,
			[]string{"x509: certificate signed by unknown authority", "name theirs with --cluster-tls-ca"}},
		{"no client certificate", n.nats.URL(), []string{"--cluster-tls-ca", n.ca.file},
			[]string{"want a client certificate", "--cluster-tls-cert and --cluster-tls-key"}},
		{"a client certificate of another CA", n.nats.URL(), []string{"--cluster-tls-ca", n.ca.file, "--cluster-tls-cert", n.strangerCert, "--cluster-tls-key", n.strangerKey},
			[]string{"refused the TLS handshake", "--cluster-tls-cert"}},
		{"a server without TLS", plain.URL(), []string{"--cluster-tls-ca", n.ca.file},
			[]string{"secure connection not available", "do not offer TLS"}},
		{"no CA file", n.nats.URL(), []string{"--cluster-tls-ca", filepath.Join(t.TempDir(), "nope.pem")},
			[]string{"--cluster-tls-ca: open", "no such file"}},
		{"a CA file without a certificate", n.nats.URL(), []string{"--cluster-tls-ca", n.clientKey},
			[]string{"--cluster-tls-ca " + n.clientKey + ": no PEM certificate in it"}},
		{"a key of another certificate", n.nats.URL(), []string{"--cluster-tls-ca", n.ca.file, "--cluster-tls-cert", n.clientCert, "--cluster-tls-key", n.strangerKey},
			[]string{"--cluster-tls-cert/--cluster-tls-key: tls: private key does not match public key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := serveFails(t, tc.url, tc.flags...)
			for _, w := range tc.want {
				if code != 1 || !strings.Contains(stderr, w) {
					t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, w)
				}
			}
		})
	}
}

// TestClusterServeCreds runs serve --cluster against a JetStream server in
// operator mode (decentralized JWT auth, accounts in a memory resolver):
// with a user's credentials file the node connects and serves; without
// one, with another operator's user, or with a file that is not
// credentials, it fails at start naming --cluster-creds.
func TestClusterServeCreds(t *testing.T) {
	op, err := natstest.NewOperator()
	if err != nil {
		t.Fatal(err)
	}
	other, err := natstest.NewOperator()
	if err != nil {
		t.Fatal(err)
	}
	nats := natstest.Start(t, 1, op.Option())
	dir := t.TempDir()
	creds := func(o *natstest.Operator, name string) string {
		b, err := o.UserCreds(name)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name+".creds")
		writeFile(t, file, string(b))
		return file
	}
	good, stranger := creds(op, "node"), creds(other, "stranger")
	garbage := filepath.Join(dir, "garbage.creds")
	writeFile(t, garbage, "not credentials\n")
	seedOnly := filepath.Join(dir, "seed-only.creds")
	goodCreds, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(goodCreds)) {
		if strings.HasPrefix(line, "SU") {
			writeFile(t, seedOnly, line)
		}
	}

	node := startClusterNode(t, nats.URL(), "--cluster-creds", good)
	writeAndRead(t, node)

	for _, tc := range []struct {
		name  string
		flags []string
		want  []string
	}{
		{"no credentials", nil, []string{"Authorization Violation", "want credentials: give a credentials file with --cluster-creds"}},
		{"another operator's user", []string{"--cluster-creds", stranger}, []string{"Authorization Violation", "refused the credentials in --cluster-creds " + stranger}},
		{"not a credentials file", []string{"--cluster-creds", garbage}, []string{"--cluster-creds " + garbage + ": no user nkey seed in it"}},
		{"a seed without its JWT", []string{"--cluster-creds", seedOnly}, []string{"--cluster-creds " + seedOnly + ": no user JWT in it"}},
		{"no file", []string{"--cluster-creds", filepath.Join(dir, "nope.creds")}, []string{"--cluster-creds: open", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := serveFails(t, nats.URL(), tc.flags...)
			for _, w := range tc.want {
				if code != 1 || !strings.Contains(stderr, w) {
					t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, w)
				}
			}
		})
	}
}
