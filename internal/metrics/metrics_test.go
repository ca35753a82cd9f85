package metrics

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestWriteAndParse(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter("test_events_total", "Events.\nSecond line with a \\ backslash.")
	vec := r.NewCounterVec("test_ends_total", "Ends by reason.", "reason", "a", "b")
	g := r.NewGauge("test_level", "A level.")
	h := r.NewHistogram("test_size", "Sizes.", []float64{1, 2, 4})
	scrapes := 0
	r.BeforeScrape(func() { scrapes++ })
	r.Collect("test_filter_total", "Per filter.", TypeCounter, func(emit Emit) {
		emit(3, Label{"filter", `we"ird\name` + "\n"}, Label{"kind", "x"})
		emit(4, Label{"filter", "plain"}, Label{"kind", "y"})
	})
	r.GaugeFunc("test_inf", "Infinite.", func() float64 { return math.Inf(1) })

	c.Inc()
	c.Add(2)
	vec.With("b").Add(5)
	g.Set(1.5)
	g.Add(-0.25)
	var wg sync.WaitGroup
	for _, v := range []float64{0.5, 1, 1.5, 3, 100} {
		wg.Add(1)
		go func() { defer wg.Done(); h.Observe(v) }()
	}
	wg.Wait()

	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	fams, err := ParseText(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if scrapes != 1 {
		t.Fatalf("BeforeScrape ran %d times", scrapes)
	}
	tests := []struct {
		family, sample string
		labels         map[string]string
		want           float64
		typ            Type
	}{
		{"test_events_total", "test_events_total", nil, 3, TypeCounter},
		{"test_ends_total", "test_ends_total", map[string]string{"reason": "a"}, 0, TypeCounter},
		{"test_ends_total", "test_ends_total", map[string]string{"reason": "b"}, 5, TypeCounter},
		{"test_level", "test_level", nil, 1.25, TypeGauge},
		{"test_size", "test_size_bucket", map[string]string{"le": "1"}, 2, TypeHistogram},
		{"test_size", "test_size_bucket", map[string]string{"le": "2"}, 3, TypeHistogram},
		{"test_size", "test_size_bucket", map[string]string{"le": "4"}, 4, TypeHistogram},
		{"test_size", "test_size_bucket", map[string]string{"le": "+Inf"}, 5, TypeHistogram},
		{"test_size", "test_size_count", nil, 5, TypeHistogram},
		{"test_size", "test_size_sum", nil, 106, TypeHistogram},
		{"test_filter_total", "test_filter_total", map[string]string{"filter": `we"ird\name` + "\n", "kind": "x"}, 3, TypeCounter},
		{"test_inf", "test_inf", nil, math.Inf(1), TypeGauge},
	}
	for _, tc := range tests {
		t.Run(tc.sample+labelString(tc.labels), func(t *testing.T) {
			f := fams[tc.family]
			if f == nil || f.Type != tc.typ {
				t.Fatalf("family %s: %+v", tc.family, f)
			}
			for _, s := range f.Samples {
				if s.Name == tc.sample && sameLabels(s.Labels, tc.labels) {
					if s.Value != tc.want {
						t.Fatalf("value %v, want %v", s.Value, tc.want)
					}
					return
				}
			}
			t.Fatalf("no sample %s%v in\n%s", tc.sample, tc.labels, text)
		})
	}
	if !strings.Contains(text, "# HELP test_events_total Events.\\nSecond line with a \\\\ backslash.\n") {
		t.Fatalf("help not escaped:\n%s", text)
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.NewCounter("test_total", "A count.").Inc()
	srv := httptest.NewServer(r)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != ContentType || string(body) != "# HELP test_total A count.\n# TYPE test_total counter\ntest_total 1\n" {
		t.Fatalf("%s\n%s", resp.Header.Get("Content-Type"), body)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, text string }{
		{"sample without TYPE", "x 1\n"},
		{"bad name", "# TYPE 1x counter\n"},
		{"bad type", "# TYPE x countr\n"},
		{"bad value", "# TYPE x counter\nx one\n"},
		{"no value", "# TYPE x counter\nx\n"},
		{"sample of another family", "# TYPE x counter\ny 1\n"},
		{"unterminated label", "# TYPE x counter\nx{a=\"b} 1\n"},
		{"bad escape", "# TYPE x counter\nx{a=\"\\t\"} 1\n"},
		{"duplicate label", "# TYPE x counter\nx{a=\"1\",a=\"2\"} 1\n"},
		{"family split", "# TYPE x counter\nx 1\n# TYPE y counter\ny 1\n# HELP x again\n"},
		{"histogram without +Inf", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram not cumulative", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram count disagrees", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseText(strings.NewReader(tc.text)); err == nil {
				t.Fatalf("accepted:\n%s", tc.text)
			}
		})
	}
}

func TestRegistrationPanics(t *testing.T) {
	tests := []struct {
		name string
		f    func(r *Registry)
	}{
		{"duplicate", func(r *Registry) { r.NewCounter("x_total", ""); r.NewGauge("x_total", "") }},
		{"bad name", func(r *Registry) { r.NewGauge("x-y", "") }},
		{"bad label", func(r *Registry) { r.NewCounterVec("x_total", "", "le-x", "a") }},
		{"unknown label value", func(r *Registry) { r.NewCounterVec("x_total", "", "k", "a").With("b") }},
		{"descending bounds", func(r *Registry) { r.NewHistogram("x", "", []float64{2, 1}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tc.f(NewRegistry())
		})
	}
}

func labelString(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
