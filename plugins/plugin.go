package plugins

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// The ABI's export names (ABI.md).
const (
	exportVersion   = "varwatch_abi_version"
	exportAlloc     = "varwatch_alloc"
	exportInit      = "varwatch_init"
	exportFilter    = "varwatch_filter"
	exportLastError = "varwatch_last_error"
	exportMemory    = "memory"
)

// signature is an export's required Wasm signature.
type signature struct {
	params, results []api.ValueType
	required        bool
}

var i32, i64 = api.ValueTypeI32, api.ValueTypeI64

var exportSignatures = map[string]signature{
	exportVersion:   {nil, []api.ValueType{i32}, true},
	exportAlloc:     {[]api.ValueType{i32}, []api.ValueType{i32}, true},
	exportFilter:    {[]api.ValueType{i32, i32}, []api.ValueType{i64}, true},
	exportInit:      {[]api.ValueType{i32, i32}, []api.ValueType{i32}, false},
	exportLastError: {nil, []api.ValueType{i64}, false},
}

// plugin is one loaded plugin: its config, a wazero runtime set up with its
// memory limit and deadline mode, and its module compiled once. Every
// instance of the plugin comes from the one compiled module.
//
// # Notes
//
// Immutable after loadPlugin and safe for concurrent use: wazero runtimes
// instantiate from several goroutines at once. Each instance, in contrast,
// belongs to one chain stage. The runtime is closed by the Manager once no
// chain uses the plugin (after a reload or at Close).
type plugin struct {
	cfg      PluginConfig
	deadline time.Duration
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	hasInit  bool
	hasError bool
	stats    *counters
	log      hclog.Logger
}

// loadPlugin compiles cfg's module (a compilation cache hit when the bytes
// were compiled before), checks its exports, and creates one probe instance
// to check that it starts and speaks our ABI version, so that a plugin that
// cannot run fails at load rather than on the first watch. The probe is not
// initialized: default params may leave out what each watch must give (a
// deadband's threshold), so params are checked per chain (Manager.Acquire,
// and at load for the default chain).
func loadPlugin(ctx context.Context, cfg PluginConfig, cache wazero.CompilationCache, stats *counters, log hclog.Logger) (*plugin, error) {
	if err := validName(cfg.Name); err != nil {
		return nil, err
	}
	wasm := cfg.Wasm
	if wasm == nil {
		var err error
		if wasm, err = os.ReadFile(cfg.Path); err != nil {
			return nil, fmt.Errorf("plugins: filter %s: %w", cfg.Name, err)
		}
	}
	p := &plugin{cfg: cfg, deadline: cfg.deadline(), stats: stats, log: log}
	rc := wazero.NewRuntimeConfig(). // the compiler where the platform has one
						WithCompilationCache(cache).
						WithMemoryLimitPages(cfg.memoryLimitPages()).
						WithCloseOnContextDone(p.deadline > 0)
	p.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	fail := func(err error) (*plugin, error) {
		_ = p.rt.Close(ctx)
		return nil, fmt.Errorf("plugins: filter %s (%s): %w", cfg.Name, cfg.Path, err)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, p.rt); err != nil {
		return fail(err)
	}
	var err error
	if p.compiled, err = p.rt.CompileModule(ctx, wasm); err != nil {
		return fail(err)
	}
	if err := p.checkExports(); err != nil {
		return fail(err)
	}
	if !p.hasInit && len(cfg.Params) > 0 {
		return fail(errors.New("params given, but the plugin takes none (it has no " + exportInit + ")"))
	}
	probe, err := p.instantiate(ctx, nil)
	if err != nil {
		return fail(err)
	}
	probe.close(ctx)
	return p, nil
}

// checkExports verifies names and signatures before anything runs.
func (p *plugin) checkExports() error {
	fns := p.compiled.ExportedFunctions()
	for name, sig := range exportSignatures {
		def, ok := fns[name]
		if !ok {
			if sig.required {
				return fmt.Errorf("not a varwatch filter: missing export %s (see plugins/ABI.md)", name)
			}
			continue
		}
		if !sameTypes(def.ParamTypes(), sig.params) || !sameTypes(def.ResultTypes(), sig.results) {
			return fmt.Errorf("export %s has signature %v -> %v, want %v -> %v",
				name, typeNames(def.ParamTypes()), typeNames(def.ResultTypes()), typeNames(sig.params), typeNames(sig.results))
		}
	}
	if _, ok := p.compiled.ExportedMemories()[exportMemory]; !ok {
		return fmt.Errorf("not a varwatch filter: missing exported memory %q", exportMemory)
	}
	_, p.hasInit = fns[exportInit]
	_, p.hasError = fns[exportLastError]
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func typeNames(ts []api.ValueType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = api.ValueTypeName(t)
	}
	return out
}

// close releases the runtime and with it every instance still open.
func (p *plugin) close(ctx context.Context) { _ = p.rt.Close(ctx) }
