package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/internal/metrics"
)

// metricsAddr is the address of the "metrics listening" log line.
func (s *server) metricsAddr(t *testing.T) string {
	t.Helper()
	out := s.stderr.waitFor(t, `"@message":"metrics listening"`)
	for _, line := range strings.Split(out, "\n") {
		var entry struct {
			Message string `json:"@message"`
			Addr    string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Message == "metrics listening" {
			return entry.Addr
		}
	}
	t.Fatalf("no metrics address in the log:\n%s", out)
	return ""
}

// get fetches url and returns the status code and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// sample returns the value of the sample name (of its family, or of the
// histogram family whose _count or _sum it is) with the given labels.
func sample(t *testing.T, fams map[string]*metrics.ParsedFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		f = fams[strings.TrimSuffix(strings.TrimSuffix(name, "_count"), "_sum")]
	}
	if f == nil {
		t.Fatalf("no family of %s", name)
	}
next:
	for _, s := range f.Samples {
		if len(s.Labels) != len(labels)/2 || s.Name != name {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			if s.Labels[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return s.Value
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

// scrapeUntil scrapes /metrics, strictly parsed, until cond holds of it.
func scrapeUntil(t *testing.T, addr string, cond func(map[string]*metrics.ParsedFamily) bool) map[string]*metrics.ParsedFamily {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		code, body := get(t, "http://"+addr+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics: %d\n%s", code, body)
		}
		fams, err := metrics.ParseText(strings.NewReader(body))
		if err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		if cond(fams) {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the metrics:\n%s", body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServeMetrics scrapes a real serve after sets, a watch and a refused
// register, and checks the series, their types and that they moved.
func TestServeMetrics(t *testing.T) {
	s := startServer(t, "--metrics-listen", "127.0.0.1:0", "--max-variables-per-session", "1")
	addr := s.metricsAddr(t)
	s.mustRun(t, "session", "create", "--id", "demo")
	s.mustRun(t, "register", "demo", "x", "integer", "0")
	w := s.start(t, "watch", "demo", "--initial")
	w.stdout.waitFor(t, "initial_values_complete\n")
	for _, v := range []string{"1", "2", "3"} {
		s.mustRun(t, "set", "demo", "x", v)
	}
	w.stdout.waitFor(t, "rev=4 value_change")
	if r := s.run("register", "demo", "y", "integer", "0"); r.code != 1 ||
		!strings.Contains(r.stderr, "RESOURCE_EXHAUSTED") || !strings.Contains(r.stderr, "max_variables_per_session") {
		t.Fatalf("register over the limit: %+v", r)
	}

	// The watch printed the last change, but the server counts a delivery
	// after Send returns, which may be just after the client has it.
	fams := scrapeUntil(t, addr, func(fams map[string]*metrics.ParsedFamily) bool {
		return sample(t, fams, "varwatch_updates_delivered_total", "type", "value_change") == 3
	})
	for name, f := range fams {
		if !strings.HasPrefix(name, "varwatch_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("%s: no varwatch_ prefix", name)
		}
		if (f.Type == metrics.TypeCounter) != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a %s, so _total must go with counters only", name, f.Type)
		}
		if f.Help == "" {
			t.Errorf("%s: no help", name)
		}
	}

	tests := []struct {
		family string
		typ    metrics.Type
		labels []string
		// at least min; exact when exact is set
		min   float64
		exact bool
	}{
		{"varwatch_sessions", metrics.TypeGauge, nil, 1, true},
		{"varwatch_sessions_created_total", metrics.TypeCounter, nil, 1, true},
		{"varwatch_session_expiries_total", metrics.TypeCounter, nil, 0, true},
		{"varwatch_sessions_closed_total", metrics.TypeCounter, nil, 0, true},
		{"varwatch_variables", metrics.TypeGauge, nil, 1, true},
		{"varwatch_sets_total", metrics.TypeCounter, nil, 3, true},
		{"varwatch_revisions_total", metrics.TypeCounter, nil, 4, true},
		{"varwatch_history_bytes", metrics.TypeGauge, nil, 1, false},
		{"varwatch_engine_queue_depth", metrics.TypeGauge, nil, 0, false},
		{"varwatch_engine_queue_capacity", metrics.TypeGauge, nil, 4096, true},
		{"varwatch_limit_rejections_total", metrics.TypeCounter, []string{"limit", "max_variables_per_session"}, 1, true},
		{"varwatch_limit_rejections_total", metrics.TypeCounter, []string{"limit", "max_watch_streams"}, 0, true},
		{"varwatch_watch_streams", metrics.TypeGauge, nil, 1, true},
		{"varwatch_watch_streams_lagging", metrics.TypeGauge, nil, 0, false},
		{"varwatch_filter_chain_feeds", metrics.TypeGauge, nil, 0, true},
		{"varwatch_updates_delivered_total", metrics.TypeCounter, []string{"type", "value_change"}, 3, true},
		{"varwatch_updates_delivered_total", metrics.TypeCounter, []string{"type", "initial_value"}, 1, true},
		{"varwatch_updates_coalesced_total", metrics.TypeCounter, nil, 0, true},
		{"varwatch_updates_dropped_total", metrics.TypeCounter, nil, 0, true},
		{"varwatch_watch_stream_ends_total", metrics.TypeCounter, []string{"reason", "session_closed"}, 0, true},
		{"go_goroutines", metrics.TypeGauge, nil, 1, false},
		{"process_start_time_seconds", metrics.TypeGauge, nil, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.family+strings.Join(tc.labels, "="), func(t *testing.T) {
			if f := fams[tc.family]; f == nil || f.Type != tc.typ {
				t.Fatalf("family %s: %+v, want a %s", tc.family, f, tc.typ)
			}
			got := sample(t, fams, tc.family, tc.labels...)
			if got < tc.min || (tc.exact && got != tc.min) {
				t.Fatalf("%s%v = %v, want %v (exact %v)", tc.family, tc.labels, got, tc.min, tc.exact)
			}
		})
	}
	batches := fams["varwatch_engine_batch_size"]
	if batches == nil || batches.Type != metrics.TypeHistogram || sample(t, fams, "varwatch_engine_batch_size_count") < 1 {
		t.Fatalf("varwatch_engine_batch_size: %+v", batches)
	}
	for _, f := range []string{"varwatch_filter_updates_in_total", "varwatch_filter_updates_total", "varwatch_filter_errors_total", "varwatch_filter_restarts_total"} {
		if fams[f] == nil || fams[f].Type != metrics.TypeCounter || len(fams[f].Samples) != 0 {
			t.Errorf("%s without filters: %+v", f, fams[f])
		}
	}

	// Counters move: the session's deletion ends the watch.
	s.mustRun(t, "session", "delete", "demo")
	if code := w.exit(t); code != 0 {
		t.Fatalf("watch exited %d", code)
	}
	fams = scrapeUntil(t, addr, func(map[string]*metrics.ParsedFamily) bool { return true })
	for _, c := range []struct {
		family string
		labels []string
		want   float64
	}{
		{"varwatch_sessions", nil, 0},
		{"varwatch_sessions_closed_total", nil, 1},
		{"varwatch_variables", nil, 0},
		{"varwatch_watch_stream_ends_total", []string{"reason", "session_closed"}, 1},
		{"varwatch_updates_delivered_total", []string{"type", "session_closed"}, 1},
	} {
		if got := sample(t, fams, c.family, c.labels...); got != c.want {
			t.Errorf("after the delete, %s%v = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
}

func TestServePprof(t *testing.T) {
	tests := []struct {
		name  string
		flags []string
		want  int
	}{
		{"on", []string{"--pprof"}, http.StatusOK},
		{"off", nil, http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, append([]string{"--metrics-listen", "127.0.0.1:0"}, tc.flags...)...)
			addr := s.metricsAddr(t)
			code, body := get(t, "http://"+addr+"/debug/pprof/goroutine?debug=1")
			if code != tc.want || (tc.want == http.StatusOK && !strings.Contains(body, "goroutine")) {
				t.Fatalf("GET /debug/pprof/goroutine: %d\n%.200s", code, body)
			}
		})
	}
}

func TestServeOpsErrors(t *testing.T) {
	tests := []struct {
		args []string
		msg  string
	}{
		{[]string{"--pprof"}, "--pprof needs --metrics-listen"},
		{[]string{"--max-sessions", "-1"}, "must not be negative"},
		{[]string{"--max-metadata-entries", "-1"}, "must not be negative"},
		{[]string{"--subscription-buffer-bytes", "0"}, "--subscription-buffer-bytes must be positive"},
		{[]string{"--max-send-message-bytes", "1000"}, "--max-send-message-bytes must be at least"},
		{[]string{"--max-recv-message-bytes", "0"}, "--max-recv-message-bytes must be positive"},
		{[]string{"--max-value-bytes", "4194304"}, "--max-recv-message-bytes must be at least --max-value-bytes"},
		{[]string{"--max-value-bytes", "3000000", "--max-recv-message-bytes", "8388608"}, "twice --max-value-bytes"},
		{[]string{"--max-value-bytes", "2000000", "--max-metadata-bytes", "1000000"}, "twice --max-value-bytes, --max-metadata-bytes"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), append([]string{"serve"}, tc.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.msg)
			}
		})
	}
}

// TestServeEngineLimits: the flags reach the engine's Config, 0 as "no
// limit", and the engine knows the send limit its updates must fit.
func TestServeEngineLimits(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	o := addServeOpsFlags(fs)
	if err := fs.Parse([]string{"--max-metadata-entries", "0", "--max-metadata-bytes", "1000", "--max-send-message-bytes", "8388608"}); err != nil {
		t.Fatal(err)
	}
	var ec engine.Config
	o.engineLimits(&ec)
	if ec.MaxMetadataEntries != -1 || ec.MaxMetadataBytes != 1000 || ec.MaxSendMessageBytes != 8<<20 ||
		ec.MaxMetadataKeyBytes != engine.DefaultMaxMetadataKeyBytes || ec.MaxSessionMetadataBytes != engine.DefaultMaxSessionMetadataBytes {
		t.Fatalf("engine config %+v", ec)
	}
}
