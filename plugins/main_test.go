package plugins

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// How the tests find their plugins:
//
//   - testdata/*.wasm are tiny hand-written WAT fixtures, committed next to
//     their .wat source (go generate ./plugins/ rebuilds them;
//     TestFixturesFresh checks they match when wat2wasm is installed).
//   - Every example (plugins/examples/*) and the Go test plugins under
//     testdata/ are built from source by TestMain, exactly as
//     scripts/build-plugins.sh does, into $VARWATCH_PLUGIN_DIR or else
//     <repo>/.cache/plugins. Go builds are incremental (go skips the link
//     when the output is up to date), so only the first run pays. A C
//     example needs clang and wasm-ld; without them its tests skip and say
//     how to install them.
//
// So `go test ./plugins/...` works on a fresh clone with only Go installed,
// plus clang/lld for the C example.

var (
	pluginDir string
	// cacheDir is the compilation cache every test Manager shares, so each
	// Go plugin compiles once per machine rather than once per test.
	cacheDir string
	// built maps a plugin name to its .wasm path; missing says why a plugin
	// could not be built.
	built   = map[string]string{}
	missing = map[string]string{}
)

func TestMain(m *testing.M) {
	if err := buildPlugins(); err != nil {
		fmt.Fprintln(os.Stderr, "building test plugins:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func buildPlugins() error {
	pluginDir = os.Getenv("VARWATCH_PLUGIN_DIR")
	if pluginDir == "" {
		pluginDir = filepath.Join("..", ".cache", "plugins")
	}
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		return err
	}
	cacheDir = filepath.Join(pluginDir, "wazero-cache")
	// Reading every source the plugins are built from makes go test's
	// result cache depend on them; otherwise an edited example could leave
	// a stale cached PASS.
	for _, root := range []string{"examples", "testdata", "sdk", "abi"} {
		if err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				_, err = os.ReadFile(path)
			}
			return err
		}); err != nil {
			return err
		}
	}
	dirs, _ := filepath.Glob(filepath.Join("examples", "*"))
	for _, dir := range []string{filepath.Join("testdata", "goprobe")} {
		dirs = append(dirs, dir)
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		out := filepath.Join(pluginDir, name+".wasm")
		var cmd *exec.Cmd
		switch {
		case has(dir, "*.go"):
			cmd = exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./"+dir)
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		case has(dir, "*.c"):
			if why := needTools("clang", "wasm-ld"); why != "" {
				missing[name] = why
				continue
			}
			srcs, _ := filepath.Glob(filepath.Join(dir, "*.c"))
			cmd = exec.Command("clang", append([]string{"--target=wasm32", "-O2", "-nostdlib", "-Wl,--no-entry", "-o", out}, srcs...)...)
		case has(dir, "*.wat"):
			if why := needTools("wat2wasm"); why != "" {
				missing[name] = why
				continue
			}
			srcs, _ := filepath.Glob(filepath.Join(dir, "*.wat"))
			cmd = exec.Command("wat2wasm", srcs[0], "-o", out)
		default:
			continue
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %v\n%s", cmd, err, stderr.String())
		}
		built[name] = out
	}
	return nil
}

func has(dir, pattern string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	return len(m) > 0
}

func needTools(tools ...string) string {
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return t + " is not installed (scripts/build-plugins.sh installs clang, lld and wabt)"
		}
	}
	return ""
}

// examplePath returns the built plugin's path or skips the test.
func examplePath(t testing.TB, name string) string {
	t.Helper()
	if p, ok := built[name]; ok {
		return p
	}
	if why, ok := missing[name]; ok {
		t.Skipf("plugin %s not built: %s", name, why)
	}
	t.Fatalf("no plugin %s (have %v)", name, built)
	return ""
}

// fixture returns a committed WAT fixture's bytes.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logBuffer collects log output for assertions; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// calm is the per-batch deadline of test plugins that do not set their
// own: the 100ms default would turn a loaded machine's stall (-race, other
// builds) into a fault and a flaky test. Tests about the deadline set it.
const calm = 10 * time.Second

// calmed is cfg with the calm deadline for plugins that set none: for
// newManager, and for what tests pass to Reload.
func calmed(cfg Config) Config {
	cfg.Plugins = slices.Clone(cfg.Plugins)
	for i := range cfg.Plugins {
		if cfg.Plugins[i].Timeout == 0 {
			cfg.Plugins[i].Timeout = calm
		}
	}
	return cfg
}

// newManager starts a Manager for cfg with a tiny restart backoff (unless
// cfg sets one) and a calm deadline (for plugins that set none), and closes
// it when the test ends. The log goes to the returned buffer.
func newManager(t testing.TB, cfg Config) (*Manager, *logBuffer) {
	t.Helper()
	cfg = calmed(cfg)
	logs := &logBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = cacheDir
	}
	if cfg.RestartBackoff == 0 {
		cfg.RestartBackoff = time.Nanosecond
	}
	m, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, logs
}

// acquire gets a chain and releases it when the test ends.
func acquire(t testing.TB, m *Manager, specs ...FilterSpec) *Chain {
	t.Helper()
	c, err := m.Acquire(context.Background(), specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Release)
	return c
}

// run runs a batch with a generous timeout so a broken test fails instead
// of hanging.
func run(t testing.TB, c *Chain, batch []Update) ([]Verdict, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.Run(ctx, batch, nil)
}

// mustRun is run that fails the test on an error.
func mustRun(t testing.TB, c *Chain, batch []Update) []Verdict {
	t.Helper()
	vs, err := run(t, c, batch)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// change returns a value_change update of a float variable.
func change(id string, oldV, newV float64) Update {
	return Update{Kind: KindValueChange, ID: id, Name: id, Type: TypeFloat,
		New: Float(newV), Old: Float(oldV), Source: "test"}
}

// actions returns the verdicts' actions as a string like "pdr".
func actions(vs []Verdict) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(map[Action]string{Pass: "p", Drop: "d", Replace: "r"}[v.Action])
	}
	return b.String()
}

// statsOf returns the named plugin's counters.
func statsOf(t testing.TB, m *Manager, name string) Stats {
	t.Helper()
	for _, s := range m.Stats() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no stats for %s", name)
	return Stats{}
}
