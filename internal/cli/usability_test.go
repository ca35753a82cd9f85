package cli

import (
	"bytes"
	"context"
	"flag"
	"net"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// TestNegativeValues: values that start with a dash are values, not flags
// (the README: negative numbers need no "--"), Inf included.
func TestNegativeValues(t *testing.T) {
	clearSecurityEnv(t)
	s := startServer(t)
	s.mustRun(t, "session", "create", "--id", "s")
	s.mustRun(t, "register", "s", "x", "float", "1")
	s.mustRun(t, "register", "s", "v", "embedding", "1,2")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"set", "s", "x", "-Inf"}, "x = -Inf "},
		{[]string{"set", "s", "x", "-inf", "--source", "me"}, "x = -Inf "},
		{[]string{"set", "s", "x", "-infinity"}, "x = -Inf "},
		{[]string{"set", "s", "x", "-1e3"}, "x = -1000 "},
		{[]string{"set", "s", "x", "-.5"}, "x = -0.5 "},
		{[]string{"set", "s", "v", "-1,-2"}, "v = [-1,-2] "},
		{[]string{"register", "s", "y", "float", "-Inf", "--max", "-1"}, "registered y = -Inf "},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if out := s.mustRun(t, tc.args...); !strings.HasPrefix(out, tc.want) {
				t.Fatalf("printed %q, want it to start with %q", out, tc.want)
			}
		})
	}
	// A dash and a letter that is no number stays a flag.
	if r := s.run("set", "s", "x", "-infx"); r.code != 2 || !strings.Contains(r.stderr, "flag provided but not defined: -infx") {
		t.Fatalf("set -infx: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestDialTarget(t *testing.T) {
	tests := []struct{ server, want string }{
		{"localhost", "localhost:50051"},
		{"varwatch.internal", "varwatch.internal:50051"},
		{"10.0.0.7", "10.0.0.7:50051"},
		{"::1", "[::1]:50051"},
		{"[::1]", "[::1]:50051"},
		{"localhost:7000", "localhost:7000"},
		{"[::1]:7000", "[::1]:7000"},
		{":7000", ":7000"},
		{"unix:/run/varwatch.sock", "unix:/run/varwatch.sock"},
		{"unix:///run/varwatch.sock", "unix:///run/varwatch.sock"},
		{"unix-abstract:varwatch", "unix-abstract:varwatch"},
		{"dns:///varwatch.internal:7000", "dns:///varwatch.internal:7000"},
	}
	for _, tc := range tests {
		if got := dialTarget(tc.server); got != tc.want {
			t.Errorf("dialTarget(%q) = %q, want %q", tc.server, got, tc.want)
		}
	}
}

// TestServerWithoutPort: --server localhost dials the default port (here
// the test server's), not gRPC's 443; a unix: target still works (serve
// listens on TCP only, so a proxy on a unix socket stands in front).
func TestServerWithoutPort(t *testing.T) {
	clearSecurityEnv(t)
	s := startServer(t)
	_, port, err := net.SplitHostPort(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	old := defaultPort
	defaultPort = port
	t.Cleanup(func() { defaultPort = old })
	for _, server := range []string{"127.0.0.1", "localhost"} {
		var stdout, stderr bytes.Buffer
		if code := Run(context.Background(), []string{"ping", "--server", server, "--timeout", "5s"}, &stdout, &stderr); code != 0 {
			t.Fatalf("--server %s: exit %d, stderr %q", server, code, stderr.String())
		}
	}

	sock := t.TempDir() + "/varwatch.sock"
	startProxyOn(t, "unix", sock, s.addr)
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"ping", "--server", "unix:" + sock, "--timeout", "5s"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--server unix:%s: exit %d, stderr %q", sock, code, stderr.String())
	}
}

// TestGroupHelp: a command group answers --help (exit 0, its subcommands
// listed) and refuses a missing or unknown subcommand (exit 2).
func TestGroupHelp(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string // on stdout
		err  string // on stderr
	}{
		{[]string{"session", "--help"}, 0, "usage: varwatch session SUBCOMMAND [ARGS] [FLAGS]\n\nSubcommands:\n  create   create a session and print its id\n", ""},
		{[]string{"session", "-h"}, 0, "  delete   delete a session and its variables\n", ""},
		{[]string{"help", "session"}, 0, "Run 'varwatch session SUBCOMMAND --help'", ""},
		{[]string{"session"}, 2, "", "varwatch: session needs a subcommand: create, get, list or delete\nusage: varwatch session create|get|list|delete ...\nRun 'varwatch session --help' for details.\n"},
		{[]string{"session", "frob"}, 2, "", `varwatch: unknown subcommand "frob" of session (want create, get, list or delete)`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, %q, %q", code, stdout.String(), stderr.String(), tc.code, tc.out, tc.err)
			}
		})
	}
}

// TestFlagPlaceholders: the placeholder --help shows for a duration flag
// names a span of time ("--keepalive-timeout duration"): Go's flag
// package takes it from the first backquoted word of the usage, so a
// stray backquote once made it "--keepalive-timeout long".
func TestFlagPlaceholders(t *testing.T) {
	timeNouns := map[string]bool{"duration": true, "interval": true, "TTL": true, "wait": true, "timeout": true, "delay": true}
	for _, c := range commands() {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.setup(&env{ctx: context.Background()}, fs)
		fs.VisitAll(func(f *flag.Flag) {
			getter, ok := f.Value.(flag.Getter)
			if !ok {
				return
			}
			if _, isDuration := getter.Get().(time.Duration); !isDuration {
				return
			}
			if name, _ := flag.UnquoteUsage(f); !timeNouns[name] {
				t.Errorf("%s --%s shows the placeholder %q, not a span of time", c.name, f.Name, name)
			}
		})
	}
	var stdout bytes.Buffer
	if code := Run(context.Background(), []string{"serve", "--help"}, &stdout, &stdout); code != 0 || !strings.Contains(stdout.String(), "  --keepalive-timeout duration ") {
		t.Fatalf("serve --help: exit %d\n%s", code, stdout.String())
	}
}

func TestFormatVersion(t *testing.T) {
	setting := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	tests := []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"test binary", debug.BuildInfo{}, "(devel)"},
		{"checkout", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: setting("vcs.revision", "35d5689e1f0a77c3b9aa", "vcs.modified", "false")}, "(devel) rev 35d5689e1f0a"},
		{"dirty checkout", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: setting("vcs.revision", "35d5689e1f0a77c3b9aa", "vcs.modified", "true")}, "(devel) rev 35d5689e1f0a+dirty"},
		{"go install @version", debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"pseudo-version", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201205510-35d5689e1f0a"}, Settings: setting("vcs.revision", "35d5689e1f0a77c3b9aa")}, "v0.0.0-20261201205510-35d5689e1f0a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatVersion(&tc.info); got != tc.want {
				t.Fatalf("formatVersion = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestVersionCommand: version and --version print the same line, exit 0;
// serve logs the version on its listening line.
func TestVersionCommand(t *testing.T) {
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if code := Run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
		if out := stdout.String(); !strings.HasPrefix(out, "varwatch "+Version()+" go") {
			t.Fatalf("%v printed %q", args, out)
		}
		outs = append(outs, stdout.String())
	}
	if outs[0] != outs[1] {
		t.Fatalf("version printed %q, --version %q", outs[0], outs[1])
	}
	clearSecurityEnv(t)
	s := startServer(t)
	if log := s.stderr.String(); !strings.Contains(log, `"version":"`+Version()+`"`) {
		t.Fatalf("listening line lacks the version:\n%s", log)
	}
}
