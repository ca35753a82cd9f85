package plugins

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults for a plugin's host options.
const (
	// DefaultTimeout is the per-batch deadline when a plugin's config names
	// none. Generous for a filter (a batch normally takes microseconds) but
	// short enough that a stuck plugin costs a stream one visible hiccup.
	DefaultTimeout = 100 * time.Millisecond
	// NoTimeout in PluginConfig.Timeout turns the deadline off: for trusted
	// plugins only, since an endless loop then blocks its chain for good.
	NoTimeout time.Duration = -1
	// DefaultMemoryLimitPages caps a plugin instance's linear memory at
	// 64 MiB (64 KiB pages). A Go plugin's runtime takes about 4 MiB.
	DefaultMemoryLimitPages = 1024
)

// Policy is what a chain does with the batch a plugin failed on.
type Policy uint8

// Policies, the values of on_error.
const (
	// OnErrorPass lets the batch through this plugin unchanged (the
	// default: a broken filter degrades to no filter).
	OnErrorPass Policy = iota
	// OnErrorDrop drops the batch's updates that reached this plugin.
	OnErrorDrop
	// OnErrorClose fails the chain's Run with a *FaultError: the caller ends
	// the streams that use the chain with a clear status.
	OnErrorClose
)

var policyNames = [...]string{"pass", "drop", "close"}

// String returns "pass", "drop" or "close".
func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// ParsePolicy is the inverse of Policy.String.
func ParsePolicy(s string) (Policy, error) {
	for i, n := range policyNames {
		if n == s {
			return Policy(i), nil
		}
	}
	return 0, fmt.Errorf("plugins: on_error %q: want pass, drop or close", s)
}

// PluginConfig loads one plugin under a name. The host options (Timeout,
// OnError, MemoryLimitPages) belong to the operator; watches can only add
// Params.
type PluginConfig struct {
	Name string
	// Path is the .wasm file; Wasm, when set, is used instead (tests).
	Path string
	Wasm []byte
	// Params are the plugin's default params. A watch's params are laid
	// over them key by key, and the result is what varwatch_init receives.
	Params map[string]string
	// Timeout is the per-batch deadline: zero means DefaultTimeout,
	// NoTimeout (or any negative value) none.
	Timeout time.Duration
	// OnError is the policy for a batch the plugin fails on.
	OnError Policy
	// MemoryLimitPages caps each instance's memory in 64 KiB pages; zero
	// means DefaultMemoryLimitPages.
	MemoryLimitPages uint32
}

// deadline returns the effective per-batch deadline, zero for none.
func (c *PluginConfig) deadline() time.Duration {
	switch {
	case c.Timeout == 0:
		return DefaultTimeout
	case c.Timeout < 0:
		return 0
	}
	return c.Timeout
}

func (c *PluginConfig) memoryLimitPages() uint32 {
	if c.MemoryLimitPages == 0 {
		return DefaultMemoryLimitPages
	}
	return c.MemoryLimitPages
}

// FilterSpec names one filter of a chain and its per-watch params.
type FilterSpec struct {
	Name   string            `json:"name"`
	Params map[string]string `json:"params,omitempty"`
}

// Config is everything a Manager loads.
type Config struct {
	Plugins []PluginConfig
	// Default is a server-wide chain put in front of every chain a watch
	// asks for (an empty request gets just the default).
	Default []FilterSpec
	// CacheDir, when set, keeps compiled plugins on disk so a restart does
	// not compile them again. The directory is wazero-version specific.
	CacheDir string
	// Logger gets a sub-logger "plugins"; nil means hclog.NewNullLogger.
	Logger hclog.Logger
	// RestartBackoff is how long a chain waits before it re-creates an
	// instance after its first fault; it doubles per consecutive fault up
	// to MaxRestartBackoff. Zero means 100ms (and 30s); tests set them tiny.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
}

// Reserved param keys: host options in a --filter flag or config file,
// refused in a watch's params so a client cannot, say, turn the deadline
// off.
var reservedKeys = map[string]bool{"path": true, "timeout": true, "on_error": true, "memory_limit": true}

// ParseFilterFlag parses one --filter value:
//
//	name=path.wasm[,key=value...]
//
// where timeout (a duration, 0 for none), on_error (pass, drop, close) and
// memory_limit (bytes with an optional KiB/MiB/GiB suffix) are host options
// and every other key is a default param. Values cannot contain commas;
// use a config file for those.
func ParseFilterFlag(s string) (PluginConfig, error) {
	parts := strings.Split(s, ",")
	name, path, ok := strings.Cut(parts[0], "=")
	if !ok || name == "" || path == "" {
		return PluginConfig{}, fmt.Errorf("plugins: --filter %q: want name=path.wasm[,key=value...]", s)
	}
	opts := map[string]string{}
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return PluginConfig{}, fmt.Errorf("plugins: --filter %q: %q is not key=value", s, kv)
		}
		if _, dup := opts[k]; dup {
			return PluginConfig{}, fmt.Errorf("plugins: --filter %q: %s given twice", s, k)
		}
		opts[k] = v
	}
	return pluginConfig(name, path, opts)
}

// pluginConfig splits opts into host options and params.
func pluginConfig(name, path string, opts map[string]string) (PluginConfig, error) {
	c := PluginConfig{Name: name, Path: path}
	if err := validName(name); err != nil {
		return c, err
	}
	for k, v := range opts {
		var err error
		switch k {
		case "path":
			err = errors.New("path is given before the first comma")
		case "timeout":
			c.Timeout, err = parseTimeout(v)
		case "on_error":
			c.OnError, err = ParsePolicy(v)
		case "memory_limit":
			c.MemoryLimitPages, err = parseMemoryLimit(v)
		default:
			if c.Params == nil {
				c.Params = map[string]string{}
			}
			c.Params[k] = v
		}
		if err != nil {
			return c, fmt.Errorf("plugins: filter %s: %s: %w", name, k, err)
		}
	}
	return c, nil
}

func validName(name string) error {
	if name == "" || strings.ContainsAny(name, "=,\x00") {
		return fmt.Errorf("plugins: filter name %q: must be non-empty without '=' or ','", name)
	}
	return nil
}

// parseTimeout reads a duration where "0" means no deadline.
func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return NoTimeout, nil
	}
	return d, nil
}

// parseMemoryLimit reads "64MiB", "512KiB", "1GiB" or plain bytes, rounded
// up to whole 64 KiB pages.
func parseMemoryLimit(s string) (uint32, error) {
	mult := uint64(1)
	num := s
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q: want a size like 64MiB", s)
	}
	pages := (n*mult + 65535) / 65536
	if pages > 65536 {
		return 0, fmt.Errorf("%q: more than the 4 GiB a 32-bit Wasm memory can have", s)
	}
	return uint32(pages), nil
}

// fileConfig is the JSON config file's shape.
type fileConfig struct {
	Plugins []struct {
		Name        string                     `json:"name"`
		Path        string                     `json:"path"`
		Params      map[string]json.RawMessage `json:"params"`
		Timeout     string                     `json:"timeout"`
		OnError     string                     `json:"on_error"`
		MemoryLimit string                     `json:"memory_limit"`
	} `json:"plugins"`
	Default []struct {
		Name   string                     `json:"name"`
		Params map[string]json.RawMessage `json:"params"`
	} `json:"default_chain"`
}

// LoadConfigFile reads a JSON plugin config file:
//
//	{
//	  "plugins": [
//	    {"name": "deadband", "path": "deadband.wasm", "params": {"threshold": 0.5},
//	     "timeout": "50ms", "on_error": "drop", "memory_limit": "32MiB"}
//	  ],
//	  "default_chain": [{"name": "deadband", "params": {"threshold": 1}}]
//	}
//
// Relative paths are relative to the file's directory. Param values may be
// JSON strings, numbers or booleans; plugins receive them as text. Only
// Plugins and Default of the result are set.
func LoadConfigFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("plugins: config: %w", err)
	}
	var fc fileConfig
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return Config{}, fmt.Errorf("plugins: config %s: %w", path, err)
	}
	var cfg Config
	for i, p := range fc.Plugins {
		opts, err := paramStrings(p.Params)
		if err != nil {
			return Config{}, fmt.Errorf("plugins: config %s: plugin %d (%s): %w", path, i, p.Name, err)
		}
		for k := range opts {
			if reservedKeys[k] {
				return Config{}, fmt.Errorf("plugins: config %s: plugin %s: %q is a host option, not a param", path, p.Name, k)
			}
		}
		for k, v := range map[string]string{"timeout": p.Timeout, "on_error": p.OnError, "memory_limit": p.MemoryLimit} {
			if v != "" {
				opts[k] = v
			}
		}
		if p.Path == "" {
			return Config{}, fmt.Errorf("plugins: config %s: plugin %q has no path", path, p.Name)
		}
		wasmPath := p.Path
		if !filepath.IsAbs(wasmPath) {
			wasmPath = filepath.Join(filepath.Dir(path), wasmPath)
		}
		pc, err := pluginConfig(p.Name, wasmPath, opts)
		if err != nil {
			return Config{}, fmt.Errorf("plugins: config %s: %w", path, err)
		}
		cfg.Plugins = append(cfg.Plugins, pc)
	}
	for _, f := range fc.Default {
		params, err := paramStrings(f.Params)
		if err != nil {
			return Config{}, fmt.Errorf("plugins: config %s: default_chain %s: %w", path, f.Name, err)
		}
		if len(params) == 0 {
			params = nil
		}
		cfg.Default = append(cfg.Default, FilterSpec{Name: f.Name, Params: params})
	}
	return cfg, nil
}

// paramStrings turns JSON scalars into the text plugins receive.
func paramStrings(raw map[string]json.RawMessage) (map[string]string, error) {
	out := make(map[string]string, len(raw))
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var v any
		if err := json.Unmarshal(raw[k], &v); err != nil {
			return nil, err
		}
		switch v := v.(type) {
		case string:
			out[k] = v
		case float64, bool:
			out[k] = strings.TrimSpace(string(raw[k]))
		default:
			return nil, fmt.Errorf("param %s: want a string, number or boolean", k)
		}
	}
	return out, nil
}
