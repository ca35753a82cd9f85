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

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/varwatch/varwatch/engine"
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

// families are the metric families of one scrape, by name.
type families = map[string]*dto.MetricFamily

// sample returns the value of the sample name (of its family, or of the
// histogram family whose _count or _sum it is) with exactly the given
// labels (name, value pairs).
func sample(t *testing.T, fams families, name string, labels ...string) float64 {
	t.Helper()
	f, suffix := fams[name], ""
	for _, sfx := range []string{"_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, sfx); f == nil && ok && fams[base] != nil {
			f, suffix = fams[base], sfx
		}
	}
	if f == nil {
		t.Fatalf("no family of %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels)/2 {
			continue
		}
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				continue next
			}
		}
		switch {
		case suffix == "_count":
			return float64(m.GetHistogram().GetSampleCount())
		case suffix == "_sum":
			return m.GetHistogram().GetSampleSum()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		}
		return m.GetUntyped().GetValue()
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

// scrape fetches /metrics once and parses it with the Prometheus text
// parser, which checks the format strictly.
func scrape(t *testing.T, addr string) (families, string) {
	t.Helper()
	code, body := get(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	return fams, body
}

// scrapeUntil scrapes /metrics until cond holds of it.
func scrapeUntil(t *testing.T, addr string, cond func(families) bool) families {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		fams, body := scrape(t, addr)
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
	fams := scrapeUntil(t, addr, func(fams families) bool {
		return sample(t, fams, "varwatch_updates_delivered_total", "type", "value_change") == 3
	})
	for name, f := range fams {
		if !strings.HasPrefix(name, "varwatch_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("%s: no varwatch_ prefix", name)
		}
		if (f.GetType() == dto.MetricType_COUNTER) != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a %s, so _total must go with counters only", name, f.GetType())
		}
		if f.GetHelp() == "" {
			t.Errorf("%s: no help", name)
		}
	}

	tests := []struct {
		family string
		typ    dto.MetricType
		labels []string
		// at least min; exact when exact is set
		min   float64
		exact bool
	}{
		{"varwatch_sessions", dto.MetricType_GAUGE, nil, 1, true},
		{"varwatch_sessions_created_total", dto.MetricType_COUNTER, nil, 1, true},
		{"varwatch_session_expiries_total", dto.MetricType_COUNTER, nil, 0, true},
		{"varwatch_sessions_closed_total", dto.MetricType_COUNTER, nil, 0, true},
		{"varwatch_variables", dto.MetricType_GAUGE, nil, 1, true},
		{"varwatch_sets_total", dto.MetricType_COUNTER, nil, 3, true},
		{"varwatch_revisions_total", dto.MetricType_COUNTER, nil, 4, true},
		{"varwatch_history_bytes", dto.MetricType_GAUGE, nil, 1, false},
		{"varwatch_engine_queue_depth", dto.MetricType_GAUGE, nil, 0, false},
		{"varwatch_engine_queue_capacity", dto.MetricType_GAUGE, nil, 4096, true},
		{"varwatch_limit_rejections_total", dto.MetricType_COUNTER, []string{"limit", "max_variables_per_session"}, 1, true},
		{"varwatch_limit_rejections_total", dto.MetricType_COUNTER, []string{"limit", "max_watch_streams"}, 0, true},
		{"varwatch_watch_streams", dto.MetricType_GAUGE, nil, 1, true},
		{"varwatch_watch_streams_lagging", dto.MetricType_GAUGE, nil, 0, false},
		{"varwatch_filter_chain_feeds", dto.MetricType_GAUGE, nil, 0, true},
		{"varwatch_updates_delivered_total", dto.MetricType_COUNTER, []string{"type", "value_change"}, 3, true},
		{"varwatch_updates_delivered_total", dto.MetricType_COUNTER, []string{"type", "initial_value"}, 1, true},
		{"varwatch_updates_coalesced_total", dto.MetricType_COUNTER, nil, 0, true},
		{"varwatch_updates_dropped_total", dto.MetricType_COUNTER, nil, 0, true},
		{"varwatch_watch_stream_ends_total", dto.MetricType_COUNTER, []string{"reason", "session_closed"}, 0, true},
		{"go_goroutines", dto.MetricType_GAUGE, nil, 1, false},
		{"process_start_time_seconds", dto.MetricType_GAUGE, nil, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.family+strings.Join(tc.labels, "="), func(t *testing.T) {
			if f := fams[tc.family]; f == nil || f.GetType() != tc.typ {
				t.Fatalf("family %s: %+v, want a %s", tc.family, f, tc.typ)
			}
			got := sample(t, fams, tc.family, tc.labels...)
			if got < tc.min || (tc.exact && got != tc.min) {
				t.Fatalf("%s%v = %v, want %v (exact %v)", tc.family, tc.labels, got, tc.min, tc.exact)
			}
		})
	}
	batches := fams["varwatch_engine_batch_size"]
	if batches == nil || batches.GetType() != dto.MetricType_HISTOGRAM || sample(t, fams, "varwatch_engine_batch_size_count") < 1 {
		t.Fatalf("varwatch_engine_batch_size: %+v", batches)
	}
	for _, f := range []string{"varwatch_filter_updates_in_total", "varwatch_filter_updates_total", "varwatch_filter_errors_total", "varwatch_filter_restarts_total"} {
		// A family without series is left out of the exposition.
		if fams[f] != nil {
			t.Errorf("%s without filters: %+v", f, fams[f])
		}
	}

	// Counters move: the session's deletion ends the watch.
	s.mustRun(t, "session", "delete", "demo")
	if code := w.exit(t); code != 0 {
		t.Fatalf("watch exited %d", code)
	}
	fams = scrapeUntil(t, addr, func(families) bool { return true })
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

// TestServeMetricsHistograms scrapes a real serve after sets seen by a
// multiplexed and a batched watch: the Prometheus text parser reads the
// Go runtime's and the process's families, varwatch_build_info, and every
// histogram with observations.
func TestServeMetricsHistograms(t *testing.T) {
	s := startServer(t, "--metrics-listen", "127.0.0.1:0")
	addr := s.metricsAddr(t)
	s.mustRun(t, "session", "create", "--id", "demo")
	s.mustRun(t, "register", "demo", "x", "integer", "0")
	mux := s.start(t, "watch", "demo", "--initial")
	batched := s.start(t, "watch", "demo", "--initial", "--batched")
	mux.stdout.waitFor(t, "initial_values_complete\n")
	batched.stdout.waitFor(t, "initial_values_complete\n")
	for _, v := range []string{"1", "2", "3"} {
		s.mustRun(t, "set", "demo", "x", v)
	}
	mux.stdout.waitFor(t, "rev=4 value_change")
	batched.stdout.waitFor(t, "rev=4 value_change")

	// Both watches got every change, and the server observes the lag once
	// per change and stream, after the send.
	fams := scrapeUntil(t, addr, func(fams families) bool {
		return fams["varwatch_delivery_lag_seconds"] != nil && sample(t, fams, "varwatch_delivery_lag_seconds_count") == 6
	})
	for _, prefix := range []string{"go_", "process_"} {
		n := 0
		for name := range fams {
			if strings.HasPrefix(name, prefix) {
				n++
			}
		}
		if n < 3 {
			t.Errorf("%d families named %s*, want the collector's", n, prefix)
		}
	}
	for _, name := range []string{"go_goroutines", "go_gc_duration_seconds", "process_start_time_seconds", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}

	for _, tc := range []struct {
		family string
		labels []string
		min    float64 // observations at least
	}{
		{"varwatch_set_latency_seconds", []string{"rpc", "SetVariable"}, 3},
		{"varwatch_delivery_lag_seconds", nil, 6},
		{"varwatch_watch_batch_size", []string{"stream", "batched"}, 2},
		{"varwatch_watch_batch_size", []string{"stream", "mux"}, 2},
		{"varwatch_engine_batch_size", nil, 1},
	} {
		t.Run(tc.family+strings.Join(tc.labels, "="), func(t *testing.T) {
			f := fams[tc.family]
			if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
				t.Fatalf("family %s: %v, want a histogram", tc.family, f)
			}
			if n := sample(t, fams, tc.family+"_count", tc.labels...); n < tc.min {
				t.Fatalf("%s%v: %v observations, want at least %v", tc.family, tc.labels, n, tc.min)
			}
			if sum := sample(t, fams, tc.family+"_sum", tc.labels...); sum <= 0 {
				t.Fatalf("%s%v: sum %v", tc.family, tc.labels, sum)
			}
		})
	}
	// No set went through SetVariables: its series is there, empty.
	if n := sample(t, fams, "varwatch_set_latency_seconds_count", "rpc", "SetVariables"); n != 0 {
		t.Errorf("SetVariables latency: %v observations, want 0", n)
	}

	info := fams["varwatch_build_info"]
	if info == nil || len(info.GetMetric()) != 1 || info.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Fatalf("varwatch_build_info: %v", info)
	}
	labels := map[string]string{}
	for _, l := range info.GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] == "" || !strings.HasPrefix(labels["goversion"], "go") {
		t.Fatalf("varwatch_build_info labels %v: want a version and a go version", labels)
	}
}

// TestServeStorageMetrics: a server with --data-dir reports its journal's
// fsyncs and its storage state; one in memory reports neither.
func TestServeStorageMetrics(t *testing.T) {
	s := startServer(t, "--metrics-listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	addr := s.metricsAddr(t)
	s.mustRun(t, "session", "create", "--id", "demo")
	s.mustRun(t, "register", "demo", "x", "integer", "0")
	s.mustRun(t, "set", "demo", "x", "1")
	fams, _ := scrape(t, addr)
	if got := sample(t, fams, "varwatch_journal_fsyncs_total"); got < 1 {
		t.Errorf("varwatch_journal_fsyncs_total = %v after three acknowledged writes, want at least 1", got)
	}
	if got := sample(t, fams, "varwatch_journal_fsync_seconds_total"); got <= 0 {
		t.Errorf("varwatch_journal_fsync_seconds_total = %v after fsyncs, want more than 0", got)
	}
	for state, want := range map[string]float64{"ok": 1, "degraded": 0, "broken": 0} {
		if got := sample(t, fams, "varwatch_storage_state", "state", state); got != want {
			t.Errorf("varwatch_storage_state{state=%q} = %v, want %v", state, got, want)
		}
	}

	mem := startServer(t, "--metrics-listen", "127.0.0.1:0")
	fams, _ = scrape(t, mem.metricsAddr(t))
	for _, name := range []string{"varwatch_journal_fsyncs_total", "varwatch_journal_fsync_seconds_total", "varwatch_storage_state"} {
		if fams[name] != nil {
			t.Errorf("an in-memory server reports %s", name)
		}
	}
}
