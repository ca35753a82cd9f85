package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeTenantQuotas: the --tenant-max-* flags are every tenant's
// default, a token line sets its tenant's own, a refusal names the limit,
// and the metrics count it.
func TestServeTenantQuotas(t *testing.T) {
	clearSecurityEnv(t)
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, tokenFile, cliAdminToken+"\n"+cliAcmeToken+" tenant=acme max_sessions=1\n"+cliOtherToken+" tenant=globex\n")
	s := startServer(t, "--auth-token-file", tokenFile, "--tenant-max-sessions", "2", "--metrics-listen", "127.0.0.1:0")
	addr := s.metricsAddr(t)

	create := func(id, token string) result { return s.run("session", "create", "--id", id, "--token", token) }
	steps := []struct {
		name, id, token string
		refused         string // "" for success, else the limit in stderr
	}{
		{"acme's first", "a1", cliAcmeToken, ""},
		{"acme's line sets 1", "a2", cliAcmeToken, "tenant_max_sessions=1"},
		{"globex is not locked out", "g1", cliOtherToken, ""},
		{"globex's second, the flag's default", "g2", cliOtherToken, ""},
		{"globex's third", "g3", cliOtherToken, "tenant_max_sessions=2"},
		{"the admin has no quota", "x1", cliAdminToken, ""},
		{"the admin's second", "x2", cliAdminToken, ""},
		{"the admin's third", "x3", cliAdminToken, ""},
	}
	for _, st := range steps {
		r := create(st.id, st.token)
		switch {
		case st.refused == "" && r.code != 0:
			t.Fatalf("%s: exit %d: %s", st.name, r.code, r.stderr)
		case st.refused != "" && (r.code != 1 || !strings.Contains(r.stderr, "RESOURCE_EXHAUSTED") || !strings.Contains(r.stderr, st.refused)):
			t.Fatalf("%s: exit %d, stderr %q; want RESOURCE_EXHAUSTED naming %s", st.name, r.code, r.stderr, st.refused)
		}
	}
	fams := scrapeUntil(t, addr, func(families) bool { return true })
	for limit, want := range map[string]float64{"tenant_max_sessions": 2, "tenant_max_watch_streams": 0, "max_sessions": 0} {
		if got := sample(t, fams, "varwatch_limit_rejections_total", "limit", limit); got != want {
			t.Errorf("varwatch_limit_rejections_total{limit=%q} = %v, want %v", limit, got, want)
		}
	}
}

func TestServeTenantQuotaErrors(t *testing.T) {
	dir := t.TempDir()
	disagree := filepath.Join(dir, "disagree")
	writeFile(t, disagree, cliAcmeToken+" tenant=acme max_sessions=1\n"+cliAcmeToken2+" tenant=acme max_sessions=2\n")
	admin := filepath.Join(dir, "admin")
	writeFile(t, admin, cliAdminToken+" max_watch_streams=3\n")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--tenant-max-sessions", "-1"}, 2, "--tenant-max-* limits must not be negative"},
		{[]string{"--tenant-max-bytes", "-5"}, 2, "--tenant-max-* limits must not be negative"},
		{[]string{"--auth-token-file", disagree}, 1, `line 2: max_sessions=2 for tenant "acme", but line 1 says max_sessions=1`},
		{[]string{"--auth-token-file", admin}, 1, "line 1: max_watch_streams needs tenant=NAME"},
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
