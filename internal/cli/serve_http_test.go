package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// httpAddr is the address of serve's "http listening" log line.
func (s *server) httpAddr(t *testing.T) string {
	t.Helper()
	out := s.stderr.waitFor(t, `"@message":"http listening"`)
	for _, line := range strings.Split(out, "\n") {
		var entry struct {
			Message string `json:"@message"`
			Addr    string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Message == "http listening" {
			return entry.Addr
		}
	}
	t.Fatalf("no http listen address in the log:\n%s", out)
	return ""
}

// TestServeHTTP: serve --http serves the JSON API, the watch and the
// console with the gRPC port's TLS and tokens, and ends its watches on
// shutdown with SHUTTING_DOWN naming the revision to resume from.
func TestServeHTTP(t *testing.T) {
	clearSecurityEnv(t)
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	cert, key := ca.issue(t, "server", true)
	tokenFile := filepath.Join(dir, "tokens")
	writeFile(t, tokenFile, cliAdminToken+"\n")
	s := startServer(t, "--http", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, "--auth-token-file", tokenFile)
	addr := s.httpAddr(t)

	pem, err := os.ReadFile(ca.file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	base := "https://" + addr
	post := func(method, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/"+method, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := post("Ping", "", `{"message":"hi"}`); code != http.StatusUnauthorized || !strings.Contains(body, `"code":16`) {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, body := post("Ping", cliAdminToken, `{"message":"hi"}`); code != http.StatusOK || !strings.Contains(body, `"message":"hi"`) {
		t.Fatalf("Ping: %d %s", code, body)
	}
	// Plaintext HTTP is not served on a TLS server.
	if resp, err := http.Get("http://" + addr + "/v1/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plaintext HTTP answered on a TLS server")
		}
	}
	resp, err := client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("varwatch console")) || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("console: %d %q", resp.StatusCode, page)
	}

	// A watch open at shutdown ends with SHUTTING_DOWN and resume_revision.
	post("InitializeSession", cliAdminToken, `{"session_id":"s"}`)
	post("RegisterVariable", cliAdminToken, `{"session_id":"s","name":"x","type":"VARIABLE_TYPE_INTEGER","initial_value":{"integer_value":"1"}}`)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/watch?session_id=s", nil)
	req.Header.Set("Authorization", "Bearer "+cliAdminToken)
	wresp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer wresp.Body.Close()
	lines := bufio.NewScanner(wresp.Body)
	waitLine := func(want string) string {
		t.Helper()
		for lines.Scan() {
			if strings.Contains(lines.Text(), want) {
				return lines.Text()
			}
		}
		t.Fatalf("the watch ended without %q: %v", want, lines.Err())
		return ""
	}
	waitLine("event: heartbeat")
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s.stop(t)
	}()
	waitLine("event: end")
	if end := waitLine("data: "); !strings.Contains(end, "SHUTTING_DOWN") || !strings.Contains(end, `"resume_revision":"1"`) {
		t.Fatalf("end event %s", end)
	}
	select {
	case <-stopped:
	case <-time.After(waitTimeout):
		t.Fatal("serve did not stop")
	}
}

// TestServeHTTPHelp: serve --help documents --http.
func TestServeHTTPHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{"serve", "--help"}, &stdout, &stderr)
	out := stdout.String() + stderr.String()
	for _, want := range []string{"-http address", "--http ADDR", "POST\n/v1/{Method}", "Last-Event-ID", "-http-write-timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
}
