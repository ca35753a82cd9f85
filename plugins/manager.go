package plugins

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"

	"github.com/varwatch/varwatch/plugins/abi"
)

// Manager is the filter registry: it loads plugins, hands out shared chains
// for watches (one per distinct filter list and params), reloads plugins
// atomically and keeps the per-plugin counters.
//
// # Notes
//
// Safe for concurrent use. Lock order: reloadMu, then mu, then a Chain's mu;
// Chain.Run takes only its chain's mu, so a slow filter never blocks
// Acquire or another chain. Acquire instantiates a new chain's plugins
// without mu (see building), so a plugin whose start hangs delays only the
// callers that asked for that chain. Reload instantiates with mu held: it
// must move every live chain at once, and runs only on SIGHUP.
type Manager struct {
	log                 hclog.Logger
	cache               wazero.CompilationCache
	backoff, maxBackoff time.Duration

	reloadMu sync.Mutex // serializes Reload and Close

	mu sync.Mutex // guards everything below
	// gen is the current set of plugins and default chain.
	gen    *generation
	chains map[string]*Chain
	// building holds the chains being started, by key: a caller asking
	// for one waits for its builder instead of starting it twice.
	building map[string]*building
	// stats are per plugin name and survive reloads.
	stats  map[string]*counters
	closed bool
}

// building is a chain being started outside mu. done is closed when the
// builder is through, whether the chain made it into chains or not.
type building struct {
	done chan struct{}
}

// generation is one loaded configuration. Immutable once built, but for
// starts: it counts the chains Acquire is starting from its plugins
// outside mu, and whoever retires it (Reload, Close) waits for them before
// closing it, since a plugin must not close under an instance starting.
type generation struct {
	plugins map[string]*plugin
	def     []FilterSpec
	starts  sync.WaitGroup // Add with mu held, while gen is current
}

func (g *generation) close(ctx context.Context) {
	for _, p := range g.plugins {
		p.close(ctx)
	}
}

// New loads every plugin of cfg (compiling each once, checking its exports
// and its default params) and returns a Manager ready to hand out chains.
// Any failure fails New; nothing stays loaded.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	m := &Manager{
		log:        log.Named("plugins"),
		backoff:    cfg.RestartBackoff,
		maxBackoff: cfg.MaxRestartBackoff,
		chains:     map[string]*Chain{},
		building:   map[string]*building{},
		stats:      map[string]*counters{},
	}
	if m.backoff <= 0 {
		m.backoff = 100 * time.Millisecond
	}
	if m.maxBackoff <= 0 {
		m.maxBackoff = 30 * time.Second
	}
	m.cache = wazero.NewCompilationCache()
	if cfg.CacheDir != "" {
		var err error
		if m.cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir); err != nil {
			return nil, fmt.Errorf("plugins: cache dir: %w", err)
		}
	}
	gen, err := m.load(ctx, cfg)
	if err != nil {
		_ = m.cache.Close(ctx)
		return nil, err
	}
	m.gen = gen
	for _, p := range cfg.Plugins {
		m.log.Info("filter loaded", "filter", p.Name, "path", p.Path, "timeout", gen.plugins[p.Name].deadline,
			"on_error", p.OnError.String(), "memory_limit_pages", p.memoryLimitPages())
	}
	return m, nil
}

// load compiles and probes every plugin of cfg into a new generation.
func (m *Manager) load(ctx context.Context, cfg Config) (*generation, error) {
	gen := &generation{plugins: map[string]*plugin{}, def: cfg.Default}
	for _, pc := range cfg.Plugins {
		if _, dup := gen.plugins[pc.Name]; dup {
			gen.close(ctx)
			return nil, fmt.Errorf("plugins: filter %s is configured twice", pc.Name)
		}
		p, err := loadPlugin(ctx, pc, m.cache, m.counters(pc.Name), m.log.Named(pc.Name))
		if err != nil {
			gen.close(ctx)
			return nil, err
		}
		gen.plugins[pc.Name] = p
	}
	// The default chain goes in front of every chain: check its names and
	// params now, by starting it once.
	if err := gen.check(cfg.Default); err != nil {
		var fe *FilterError
		if errors.As(err, &fe) {
			fe.Index = -1
		}
		gen.close(ctx)
		return nil, fmt.Errorf("plugins: default chain: %w", err)
	}
	stages, err := m.buildStages(ctx, gen, cfg.Default)
	if err != nil {
		gen.close(ctx)
		return nil, fmt.Errorf("plugins: default chain: %w", asFilterError(err, cfg.Default, len(cfg.Default)))
	}
	closeStages(ctx, stages)
	return gen, nil
}

// check returns a *FilterError for the first filter that names no loaded
// plugin or passes a host option as a param.
func (g *generation) check(filters []FilterSpec) error {
	for i, f := range filters {
		if _, ok := g.plugins[f.Name]; !ok {
			return &FilterError{Index: i, Name: f.Name, Err: ErrUnknownFilter,
				Reason: "loaded filters: " + fmt.Sprint(slices.Sorted(maps.Keys(g.plugins)))}
		}
		for k := range f.Params {
			if reservedKeys[k] {
				return &FilterError{Index: i, Name: f.Name, Err: ErrInvalidParams,
					Reason: fmt.Sprintf("%q is a server option, not a param", k)}
			}
		}
	}
	return nil
}

// counters returns the counters of a plugin name, creating them once.
func (m *Manager) counters(name string) *counters {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.stats[name]
	if c == nil {
		c = &counters{}
		m.stats[name] = c
	}
	return c
}

// Acquire returns the chain for the server-wide default chain followed by
// filters, shared with every other caller that asked for the same list and
// params; the caller must Release it when its stream ends. It returns nil
// (the empty chain) when there is no filter at all.
//
// A new chain instantiates each plugin and initializes it with its params,
// so a request that names an unknown filter, passes a host option (timeout,
// on_error, memory_limit, path) as a param, or has params the plugin
// refuses fails here with a *FilterError, before any stream starts.
// Other errors (a plugin that traps while starting) are server faults.
func (m *Manager) Acquire(ctx context.Context, filters []FilterSpec) (*Chain, error) {
	m.mu.Lock()
	for {
		if m.closed {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		gen := m.gen
		if err := gen.check(filters); err != nil {
			m.mu.Unlock()
			return nil, err
		}
		specs := slices.Concat(gen.def, filters)
		if len(specs) == 0 {
			m.mu.Unlock()
			return nil, nil
		}
		key, name := chainKey(specs)
		if c := m.chains[key]; c != nil {
			c.refs++
			m.mu.Unlock()
			return c, nil
		}
		if b := m.building[key]; b != nil {
			// Someone starts this very chain: wait for them, then look
			// again (it is live, or they failed and it is ours to try).
			m.mu.Unlock()
			select {
			case <-b.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			m.mu.Lock()
			continue
		}
		b := &building{done: make(chan struct{})}
		m.building[key] = b
		gen.starts.Add(1)
		m.mu.Unlock()

		stages, err := m.buildStages(ctx, gen, specs)
		gen.starts.Done()

		m.mu.Lock()
		delete(m.building, key)
		close(b.done)
		if m.closed || m.gen != gen {
			// Closed, or reloaded while we built: the stages are of plugins
			// that are gone (which may be why building failed). Try again
			// with what is loaded now.
			m.mu.Unlock()
			if err == nil {
				closeStages(ctx, stages)
			}
			m.mu.Lock()
			continue
		}
		if err != nil {
			m.mu.Unlock()
			return nil, asFilterError(err, specs, len(gen.def))
		}
		c := &Chain{mgr: m, key: key, name: name, specs: specs, refs: 1, stages: stages}
		m.chains[key] = c
		m.log.Debug("chain created", "chain", name, "chains", len(m.chains))
		m.mu.Unlock()
		return c, nil
	}
}

// stageError says which filter of a chain failed to start.
type stageError struct {
	index int
	err   error
}

func (e *stageError) Error() string { return fmt.Sprintf("filter %d: %v", e.index, e.err) }
func (e *stageError) Unwrap() error { return e.err }

// asFilterError turns a stageError whose plugin refused its params into a
// FilterError, indexed in the request's chain (which follows nd default
// filters; -1 for the default chain itself). Other errors pass unchanged.
func asFilterError(err error, specs []FilterSpec, nd int) error {
	var se *stageError
	var refused *paramsRefused
	if !errors.As(err, &se) {
		return err
	}
	if errors.As(se.err, &refused) {
		index := se.index - nd
		if index < 0 {
			index = -1
		}
		return &FilterError{Index: index, Name: specs[se.index].Name, Err: ErrInvalidParams, Reason: refused.msg}
	}
	return err
}

// testHookInstantiate, set only by tests, runs before each plugin instance
// of a chain starts, with the plugin's name: it makes a start hang.
var testHookInstantiate func(plugin string)

// buildStages instantiates one stage per spec from gen's plugins.
func (m *Manager) buildStages(ctx context.Context, gen *generation, specs []FilterSpec) ([]*stage, error) {
	stages := make([]*stage, 0, len(specs))
	for i, f := range specs {
		p, ok := gen.plugins[f.Name]
		if !ok {
			closeStages(ctx, stages)
			return nil, &stageError{i, &FilterError{Index: i, Name: f.Name, Err: ErrUnknownFilter}}
		}
		params := make(map[string]string, len(p.cfg.Params)+len(f.Params))
		maps.Copy(params, p.cfg.Params)
		maps.Copy(params, f.Params)
		s := &stage{plugin: p, params: abi.AppendParams(nil, params)}
		if testHookInstantiate != nil {
			testHookInstantiate(f.Name)
		}
		in, err := p.instantiate(ctx, s.params)
		if err != nil {
			closeStages(ctx, stages)
			return nil, &stageError{i, err}
		}
		s.inst = in
		stages = append(stages, s)
	}
	return stages, nil
}

func closeStages(ctx context.Context, stages []*stage) {
	for _, s := range stages {
		s.close(ctx)
	}
}

// release drops one reference to c and closes it with the last.
func (m *Manager) release(c *Chain) {
	m.mu.Lock()
	c.refs--
	last := c.refs == 0
	if last && m.chains[c.key] == c {
		delete(m.chains, c.key)
	}
	m.mu.Unlock()
	if last {
		c.close(context.Background())
		m.log.Debug("chain closed", "chain", c.name)
	}
}

// Reload loads cfg's plugins and moves every live chain onto them, all or
// nothing: the new modules are compiled, probed, and instantiated and
// initialized for every live chain first; only if all of that works are the
// chains switched (each between two batches) and the old plugins closed.
// On any failure the old plugins keep running and Reload returns the
// error. A live chain that names a filter the new config lacks, or whose
// params the new plugin refuses, fails the reload.
//
// Chains keep their filter list: a changed default chain applies to chains
// acquired after the reload. Filters start from fresh state (a deadband
// forgets its last values), as after a restart. CacheDir, Logger and the
// backoffs of cfg are ignored; they are fixed by New.
func (m *Manager) Reload(ctx context.Context, cfg Config) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if m.isClosed() {
		return ErrClosed
	}
	gen, err := m.load(ctx, cfg)
	if err != nil {
		m.log.Warn("reload failed, keeping the loaded filters", "error", err)
		return err
	}

	m.mu.Lock()
	chains := slices.Collect(maps.Values(m.chains))
	fresh := make([][]*stage, len(chains))
	for i, c := range chains {
		if fresh[i], err = m.buildStages(ctx, gen, c.specs); err != nil {
			m.mu.Unlock()
			for _, s := range fresh[:i] {
				closeStages(ctx, s)
			}
			gen.close(ctx)
			err = fmt.Errorf("plugins: reload: chain %s: %w", c.name, err)
			m.log.Warn("reload failed, keeping the loaded filters", "error", err)
			return err
		}
	}
	for i, c := range chains {
		old, ok := c.swapStages(fresh[i])
		if !ok {
			old = fresh[i] // released meanwhile
		}
		closeStages(ctx, old)
	}
	old := m.gen
	m.gen = gen
	m.mu.Unlock()

	old.starts.Wait() // they start again from gen, seeing it changed
	old.close(ctx)
	m.log.Info("filters reloaded", "filters", len(gen.plugins), "chains", len(chains))
	return nil
}

func (m *Manager) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// Stats returns every plugin's counters, sorted by name (plugins removed by
// a reload included, so totals never go backwards).
func (m *Manager) Stats() []Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Stats, 0, len(m.stats))
	for name, c := range m.stats {
		out = append(out, c.snapshot(name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LogStats logs every plugin's counters at Info, one line each; the server
// calls it periodically and at shutdown.
func (m *Manager) LogStats() {
	for _, s := range m.Stats() {
		logStats(m.log, s)
	}
}

// Close closes every chain (a Run in progress finishes first; later ones
// get ErrClosed), every plugin and the compilation cache. Idempotent.
func (m *Manager) Close(ctx context.Context) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	chains := slices.Collect(maps.Values(m.chains))
	m.chains = map[string]*Chain{}
	gen := m.gen
	m.mu.Unlock()
	for _, c := range chains {
		c.close(ctx)
	}
	gen.starts.Wait() // they end with ErrClosed
	gen.close(ctx)
	m.LogStats()
	return m.cache.Close(ctx)
}
