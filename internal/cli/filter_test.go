package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/varwatch/varwatch/plugins"
)

var (
	deadbandOnce sync.Once
	deadbandWasm string
	deadbandErr  error
	filterCache  string
)

// deadbandPlugin builds the deadband example (once per test binary) into
// $VARWATCH_PLUGIN_DIR/cli or .cache/plugins/cli and returns its path.
func deadbandPlugin(t *testing.T) string {
	t.Helper()
	deadbandOnce.Do(func() {
		base := os.Getenv("VARWATCH_PLUGIN_DIR")
		if base == "" {
			base = filepath.Join("..", "..", ".cache", "plugins")
		}
		dir := filepath.Join(base, "cli")
		if deadbandErr = os.MkdirAll(dir, 0o755); deadbandErr != nil {
			return
		}
		src := filepath.Join("..", "..", "plugins", "examples", "deadband")
		files, _ := filepath.Glob(filepath.Join(src, "*.go"))
		for _, f := range files {
			_, _ = os.ReadFile(f) // makes go test's cache depend on the source
		}
		deadbandWasm = filepath.Join(dir, "deadband.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", deadbandWasm, "./"+filepath.ToSlash(src))
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			deadbandErr = err
			deadbandWasm = stderr.String()
			return
		}
		// Compile it into the cache serve is given, so that serve starts
		// in milliseconds however loaded the machine is.
		filterCache = filepath.Join(dir, "wazero-cache")
		var m *plugins.Manager
		m, deadbandErr = plugins.New(context.Background(), plugins.Config{CacheDir: filterCache,
			Plugins: []plugins.PluginConfig{{Name: "deadband", Path: deadbandWasm}}})
		if deadbandErr == nil {
			deadbandErr = m.Close(context.Background())
		}
	})
	if deadbandErr != nil {
		t.Fatalf("building deadband: %v\n%s", deadbandErr, deadbandWasm)
	}
	return deadbandWasm
}

// TestServeWithFilters loads a filter from a flag, watches through it
// from the command line, and reloads it on SIGHUP.
func TestServeWithFilters(t *testing.T) {
	s := startServer(t, "--filter", "deadband="+deadbandPlugin(t)+",timeout=10s", "--filter-cache-dir", filterCache, "--heartbeat-interval", "1m")
	s.mustRun(t, "session", "create", "--id", "s")
	s.mustRun(t, "register", "s", "x", "float", "0")
	w := s.start(t, "watch", "s", "x", "--filter", "deadband:threshold=0.5")
	w.stdout.waitFor(t, "heartbeat") // the stream is registered
	for _, v := range []string{"0.1", "0.3", "0.9", "1.0", "1.5", "100"} {
		s.mustRun(t, "set", "s", "x", v)
	}
	out := w.stdout.waitFor(t, "-> 100 ")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, "value_change") {
			got = append(got, line)
		}
	}
	want := []string{
		"rev=2 value_change x 0 -> 0.1 (source=cli)",
		"rev=4 value_change x 0.3 -> 0.9 (source=cli)",
		"rev=6 value_change x 1 -> 1.5 (source=cli)",
		"rev=7 value_change x 1.5 -> 100 (source=cli)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("filtered watch printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	r := s.run("watch", "s", "--filter", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "INVALID_ARGUMENT") || !strings.Contains(r.stderr, "unknown filter") {
		t.Fatalf("watch with an unknown filter: exit %d, stderr %q", r.code, r.stderr)
	}

	// serve registered for SIGHUP before it logged "listening".
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.stderr.waitFor(t, `"@message":"filters reloaded"`)
	s.mustRun(t, "set", "s", "x", "200")
	w.stdout.waitFor(t, "-> 200 ")
	s.stop(t)
	if log := s.stderr.String(); !strings.Contains(log, `"@message":"filter stats"`) {
		t.Fatalf("no filter stats logged at shutdown:\n%s", log)
	}
}

func TestParseFilterSpec(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "deadband", want: "deadband map[]"},
		{in: "deadband:threshold=0.5", want: "deadband map[threshold:0.5]"},
		{in: "scale:a=2,b=", want: "scale map[a:2 b:]"},
		{in: ":a=1", bad: true},
		{in: "scale:a", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			f, err := parseFilterSpec(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("no error for %q", tc.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.GetName() + " " + fmt.Sprint(f.GetParams()); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestServeFilterConfigReload loads filters from a config file with a
// default chain, and keeps them when a SIGHUP reload fails.
func TestServeFilterConfigReload(t *testing.T) {
	wasm, err := filepath.Abs(deadbandPlugin(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "filters.json")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"plugins": [{"name": "deadband", "path": "` + wasm + `", "params": {"threshold": 0.5}, "timeout": "10s"}]}`)
	s := startServer(t, "--filter-config", cfg, "--default-filters", "deadband", "--filter-cache-dir", filterCache, "--heartbeat-interval", "1m")
	s.mustRun(t, "session", "create", "--id", "s")
	s.mustRun(t, "register", "s", "x", "float", "0")
	w := s.start(t, "watch", "s", "x") // filtered by the default chain
	w.stdout.waitFor(t, "heartbeat")

	write(`{"plugins": [{"name": "deadband", "path": "/nonexistent.wasm"}]}`)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.stderr.waitFor(t, `"@message":"filter reload failed; the loaded filters keep running"`)
	for _, v := range []string{"0.1", "0.2", "5"} {
		s.mustRun(t, "set", "s", "x", v)
	}
	out := w.stdout.waitFor(t, "-> 5 ")
	if strings.Contains(out, "-> 0.2 ") || !strings.Contains(out, "-> 0.1 ") {
		t.Fatalf("the default deadband did not filter after a failed reload:\n%s", out)
	}
}
