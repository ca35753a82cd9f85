package plugins

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseFilterFlag(t *testing.T) {
	cases := []struct {
		in      string
		want    PluginConfig
		wantErr string
	}{
		{in: "deadband=/p/deadband.wasm", want: PluginConfig{Name: "deadband", Path: "/p/deadband.wasm"}},
		{in: "d=x.wasm,threshold=0.5,timeout=50ms,on_error=drop,memory_limit=32MiB", want: PluginConfig{
			Name: "d", Path: "x.wasm", Params: map[string]string{"threshold": "0.5"},
			Timeout: 50 * time.Millisecond, OnError: OnErrorDrop, MemoryLimitPages: 512}},
		{in: "d=x.wasm,timeout=0", want: PluginConfig{Name: "d", Path: "x.wasm", Timeout: NoTimeout}},
		{in: "d=x.wasm,memory_limit=100000", want: PluginConfig{Name: "d", Path: "x.wasm", MemoryLimitPages: 2}},
		{in: "d=x.wasm,on_error=close", want: PluginConfig{Name: "d", Path: "x.wasm", OnError: OnErrorClose}},
		{in: "d", wantErr: "want name=path.wasm"},
		{in: "=x.wasm", wantErr: "want name=path.wasm"},
		{in: "d=x.wasm,novalue", wantErr: "is not key=value"},
		{in: "d=x.wasm,a=1,a=2", wantErr: "given twice"},
		{in: "d=x.wasm,timeout=soon", wantErr: "timeout"},
		{in: "d=x.wasm,on_error=ignore", wantErr: "want pass, drop or close"},
		{in: "d=x.wasm,memory_limit=lots", wantErr: "size like 64MiB"},
		{in: "d=x.wasm,memory_limit=8GiB", wantErr: "4 GiB"},
		{in: "d=x.wasm,path=y.wasm", wantErr: "path is given"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseFilterFlag(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "filters.json")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := LoadConfigFile(write(`{
		"plugins": [
			{"name": "deadband", "path": "deadband.wasm", "params": {"threshold": 0.5, "strict": true, "mode": "abs"},
			 "timeout": "0", "on_error": "close", "memory_limit": "16MiB"},
			{"name": "redact", "path": "/abs/redact.wasm", "params": {"pattern": "\\d{3,4}"}}
		],
		"default_chain": [{"name": "redact"}, {"name": "deadband", "params": {"threshold": 2}}]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Plugins: []PluginConfig{
			{Name: "deadband", Path: filepath.Join(dir, "deadband.wasm"),
				Params:  map[string]string{"threshold": "0.5", "strict": "true", "mode": "abs"},
				Timeout: NoTimeout, OnError: OnErrorClose, MemoryLimitPages: 256},
			{Name: "redact", Path: "/abs/redact.wasm", Params: map[string]string{"pattern": `\d{3,4}`}},
		},
		Default: []FilterSpec{{Name: "redact"}, {Name: "deadband", Params: map[string]string{"threshold": "2"}}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}

	for name, bad := range map[string]string{
		"unknown field":      `{"plugins": [{"name": "a", "path": "a.wasm", "timout": "1s"}]}`,
		"host option param":  `{"plugins": [{"name": "a", "path": "a.wasm", "params": {"timeout": "1s"}}]}`,
		"object param":       `{"plugins": [{"name": "a", "path": "a.wasm", "params": {"x": {}}}]}`,
		"missing path":       `{"plugins": [{"name": "a"}]}`,
		"bad policy":         `{"plugins": [{"name": "a", "path": "a.wasm", "on_error": "retry"}]}`,
		"not json":           `plugins: []`,
		"bad default params": `{"default_chain": [{"name": "a", "params": {"x": [1]}}]}`,
	} {
		if _, err := LoadConfigFile(write(bad)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := LoadConfigFile(filepath.Join(dir, "none.json")); err == nil {
		t.Error("missing file loaded")
	}
}

func TestHostOptionDefaults(t *testing.T) {
	var c PluginConfig
	if c.deadline() != DefaultTimeout || c.memoryLimitPages() != DefaultMemoryLimitPages || c.OnError != OnErrorPass {
		t.Fatalf("defaults: %v %v %v", c.deadline(), c.memoryLimitPages(), c.OnError)
	}
	c.Timeout = NoTimeout
	if c.deadline() != 0 {
		t.Fatalf("NoTimeout gives %v", c.deadline())
	}
}
