package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	vwclient "github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	dir  string
	name string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
}

var serial int64

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{dir: dir, name: name, cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue makes a certificate and key signed by ca, for a server (with the
// given DNS names and 127.0.0.1 unless dns says "only") or a client, and
// returns their files.
func (ca *testCA) issue(t *testing.T, name string, server bool, dns ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = dns
		if len(dns) == 0 {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestServeTLS runs serve with TLS, then with mutual TLS, and connects the
// CLI with and without the right certificates.
func TestServeTLS(t *testing.T) {
	clearSecurityEnv(t)
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	other := newTestCA(t, dir, "other-ca")
	srvCert, srvKey := ca.issue(t, "server", true)
	namedCert, namedKey := ca.issue(t, "named-server", true, "varwatch.test")
	cliCert, cliKey := ca.issue(t, "client", false)
	strangerCert, strangerKey := other.issue(t, "stranger", false)

	tlsServer := startServer(t, "--tls-cert", srvCert, "--tls-key", srvKey)
	namedServer := startServer(t, "--tls-cert", namedCert, "--tls-key", namedKey)
	mtlsServer := startServer(t, "--tls-cert", srvCert, "--tls-key", srvKey, "--tls-client-ca", ca.file)

	plainServer := startServer(t)

	// msg is what the refusal must say: a mismatch of TLS and plaintext
	// is named as one, not taken for a server that is not running.
	const speaksTLS = "speaks TLS: pass --tls, with --tls-ca FILE unless its certificate is from a public CA)"
	for _, tc := range []struct {
		name   string
		server *server
		flags  []string
		ok     bool
		msg    string
	}{
		{"TLS with the CA", tlsServer, []string{"--tls-ca", ca.file}, true, ""},
		{"TLS, plaintext client", tlsServer, nil, false, "(the server at " + tlsServer.addr + " " + speaksTLS},
		{"TLS, system roots", tlsServer, []string{"--tls"}, false, "x509: "},
		{"TLS, another CA", tlsServer, []string{"--tls-ca", other.file}, false, "x509: "},
		{"TLS, server name override", namedServer, []string{"--tls-ca", ca.file, "--tls-server-name", "varwatch.test"}, true, ""},
		{"TLS, name mismatch", namedServer, []string{"--tls-ca", ca.file}, false, "x509: "},
		{"mTLS with a client certificate", mtlsServer, []string{"--tls-ca", ca.file, "--tls-cert", cliCert, "--tls-key", cliKey}, true, ""},
		{"mTLS without a client certificate", mtlsServer, []string{"--tls-ca", ca.file}, false, ""},
		{"mTLS, certificate of another CA", mtlsServer, []string{"--tls-ca", ca.file, "--tls-cert", strangerCert, "--tls-key", strangerKey}, false, ""},
		{"mTLS, plaintext client", mtlsServer, nil, false, speaksTLS},
		{"plaintext server, TLS client", plainServer, []string{"--tls-ca", ca.file}, false,
			"(the server at " + plainServer.addr + " does not speak TLS: drop --tls and the other --tls flags, and unset $VARWATCH_TLS*)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.server.run(append([]string{"ping", "--timeout", "5s"}, tc.flags...)...)
			switch {
			case tc.ok && r.code != 0:
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			case !tc.ok && (r.code != 1 || !strings.Contains(r.stderr, "UNAVAILABLE")):
				t.Fatalf("exit %d, stderr %q; want a refused connection", r.code, r.stderr)
			case !tc.ok && !strings.Contains(r.stderr, tc.msg):
				t.Fatalf("stderr %q lacks %q", r.stderr, tc.msg)
			case !tc.ok && strings.Contains(r.stderr, "is 'varwatch serve' running"):
				t.Fatalf("stderr %q suggests the server is not running", r.stderr)
			}
		})
	}

	t.Run("environment variables", func(t *testing.T) {
		t.Setenv("VARWATCH_TLS_CA", ca.file)
		t.Setenv("VARWATCH_TLS_CERT", cliCert)
		t.Setenv("VARWATCH_TLS_KEY", cliKey)
		mtlsServer.mustRun(t, "ping")
	})
	t.Run("a client certificate without its key", func(t *testing.T) {
		r := mtlsServer.run("ping", "--tls-ca", ca.file, "--tls-cert", cliCert)
		if r.code != 2 || !strings.Contains(r.stderr, "both its certificate and its key") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("Go client", func(t *testing.T) {
		tc, err := vwclient.LoadTLS(vwclient.TLSFiles{CA: ca.file, Cert: cliCert, Key: cliKey})
		if err != nil {
			t.Fatal(err)
		}
		c, err := vwclient.Dial(mtlsServer.addr, vwclient.Config{TLS: tc})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if _, err := c.Ping(ctx, &pb.PingRequest{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a watch over mTLS", func(t *testing.T) {
		flags := []string{"--tls-ca", ca.file, "--tls-cert", cliCert, "--tls-key", cliKey}
		mtlsServer.mustRun(t, append([]string{"session", "create", "--id", "s"}, flags...)...)
		mtlsServer.mustRun(t, append([]string{"register", "s", "x", "integer", "1"}, flags...)...)
		w := mtlsServer.start(t, append([]string{"watch", "s", "--initial"}, flags...)...)
		w.stdout.waitFor(t, "rev=1 initial_values_complete")
		mtlsServer.mustRun(t, append([]string{"set", "s", "x", "2"}, flags...)...)
		w.stdout.waitFor(t, "rev=2 value_change x 1 -> 2")
	})
}

const (
	cliAdminToken = "cli-admin-token-0123456789"
	cliAcmeToken  = "cli-acme-token-0123456789"
	cliAcmeToken2 = "cli-acme-token-rotated-01"
	cliOtherToken = "cli-globex-token-012345678"
)

// TestServeAuth runs serve with a token file: calls need a token, tenants
// see only their sessions, health stays open, and SIGHUP reloads the file.
func TestServeAuth(t *testing.T) {
	clearSecurityEnv(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "tokens")
	writeFile(t, tokenFile, "# admin\n"+cliAdminToken+"\n\n"+cliAcmeToken+" tenant=acme\n"+cliOtherToken+" tenant=globex\n")
	acmeFile := filepath.Join(dir, "acme-token")
	writeFile(t, acmeFile, cliAcmeToken+"\n")
	s := startServer(t, "--auth-token-file", tokenFile)

	s.mustRun(t, "session", "create", "--id", "a", "--token-file", acmeFile)
	s.mustRun(t, "register", "a", "x", "integer", "1", "--token", cliAcmeToken)

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		msg  string // in stdout on success, stderr otherwise
	}{
		{"no token", []string{"get", "a", "x"}, nil, 1, "UNAUTHENTICATED: missing credentials"},
		{"wrong token", []string{"get", "a", "x", "--token", "not-the-token-0123456789"}, nil, 1, "UNAUTHENTICATED: invalid token"},
		{"other tenant", []string{"get", "a", "x", "--token", cliOtherToken}, nil, 1, `PERMISSION_DENIED: session "a" belongs to another tenant`},
		{"other tenant sets", []string{"set", "a", "x", "5", "--token", cliOtherToken}, nil, 1, "PERMISSION_DENIED"},
		{"other tenant deletes the session", []string{"session", "delete", "a", "--token", cliOtherToken}, nil, 1, "PERMISSION_DENIED"},
		{"other tenant watches", []string{"watch", "a", "--token", cliOtherToken}, nil, 1, "PERMISSION_DENIED"},
		{"other tenant lists sessions", []string{"session", "list", "--token", cliOtherToken}, nil, 0, ""},
		{"owner", []string{"get", "a", "x", "--token", cliAcmeToken}, nil, 0, "x = 1 "},
		{"owner lists sessions", []string{"session", "list", "--token", cliAcmeToken}, nil, 0, "\na "},
		{"admin", []string{"get", "a", "x", "--token", cliAdminToken}, nil, 0, "x = 1 "},
		{"token from the environment", []string{"get", "a", "x"}, map[string]string{"VARWATCH_TOKEN": cliAcmeToken}, 0, "x = 1 "},
		{"token file from the environment", []string{"get", "a", "x"}, map[string]string{"VARWATCH_TOKEN_FILE": acmeFile}, 0, "x = 1 "},
		{"the flag beats the environment", []string{"get", "a", "x", "--token", cliOtherToken}, map[string]string{"VARWATCH_TOKEN": cliAcmeToken}, 1, "PERMISSION_DENIED"},
		{"token and token file", []string{"get", "a", "x", "--token", cliAcmeToken, "--token-file", acmeFile}, nil, 2, "not both"},
		{"missing token file", []string{"get", "a", "x", "--token-file", filepath.Join(dir, "nope")}, nil, 2, "token file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			r := s.run(tc.args...)
			out := r.stderr
			if tc.code == 0 {
				out = r.stdout
			}
			if r.code != tc.code || !strings.Contains(out, tc.msg) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d with %q", r.code, r.stdout, r.stderr, tc.code, tc.msg)
			}
			if tc.name == "other tenant lists sessions" && strings.Contains(r.stdout, "\na ") {
				t.Fatalf("globex sees acme's session:\n%s", r.stdout)
			}
		})
	}
	if out := s.mustRun(t, "get", "a", "x", "--token", cliAcmeToken); !strings.Contains(out, "x = 1 (integer, id=1, version=1, rev=1") {
		t.Fatalf("refused calls changed x: %s", out)
	}

	t.Run("health stays open", func(t *testing.T) {
		c, err := vwclient.Dial(s.addr, vwclient.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		resp, err := healthpb.NewHealthClient(c.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health: %v, %v", resp, err)
		}
		if _, err := c.Ping(ctx, &pb.PingRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("Ping without a token: %v", err)
		}
		tok, err := vwclient.Dial(s.addr, vwclient.Config{Token: cliAcmeToken})
		if err != nil {
			t.Fatal(err)
		}
		defer tok.Close()
		if _, err := tok.Ping(ctx, &pb.PingRequest{}); err != nil {
			t.Fatalf("Go client with a token over plaintext: %v", err)
		}
	})

	t.Run("SIGHUP reloads the token file", func(t *testing.T) {
		writeFile(t, tokenFile, cliAcmeToken2+" tenant=acme\n")
		// serve registered for SIGHUP before it logged "listening".
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		s.stderr.waitFor(t, `"@message":"SIGHUP: tokens reloaded"`)
		if r := s.run("get", "a", "x", "--token", cliAcmeToken); r.code != 1 || !strings.Contains(r.stderr, "UNAUTHENTICATED") {
			t.Fatalf("the removed token: exit %d, stderr %q", r.code, r.stderr)
		}
		// The new token is acme's too: the session is still its own.
		s.mustRun(t, "get", "a", "x", "--token", cliAcmeToken2)

		writeFile(t, tokenFile, "# everything commented out\n")
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		s.stderr.waitFor(t, `"@message":"SIGHUP: token reload failed; the loaded tokens stay"`)
		s.mustRun(t, "get", "a", "x", "--token", cliAcmeToken2)
	})
}

func TestServeSecurityErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "\n")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--tls-cert", "c.pem"}, 2, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-client-ca", "ca.pem"}, 2, "--tls-client-ca needs --tls-cert"},
		{[]string{"--keepalive-time", "0s"}, 2, "--keepalive-time must be positive"},
		{[]string{"--keepalive-timeout", "0s"}, 2, "--keepalive-timeout must be positive"},
		{[]string{"--tls-cert", filepath.Join(dir, "nope.crt"), "--tls-key", filepath.Join(dir, "nope.key")}, 1, "--tls-cert/--tls-key"},
		{[]string{"--auth-token-file", filepath.Join(dir, "nope")}, 1, "--auth-token-file"},
		{[]string{"--auth-token-file", empty}, 1, "no tokens"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Run(context.Background(), append([]string{"serve", "--listen", "127.0.0.1:0"}, tc.args...), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.msg)
			}
		})
	}
}

// clearSecurityEnv unsets the client's TLS and token variables for the
// test, so the environment the tests run in cannot change them.
func clearSecurityEnv(t *testing.T) {
	for _, k := range []string{"VARWATCH_TLS", "VARWATCH_TLS_CA", "VARWATCH_TLS_CERT", "VARWATCH_TLS_KEY",
		"VARWATCH_TLS_SERVER_NAME", "VARWATCH_TOKEN", "VARWATCH_TOKEN_FILE"} {
		t.Setenv(k, "")
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
