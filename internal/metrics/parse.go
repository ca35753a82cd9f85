package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// ParsedFamily is one family read back by ParseText.
type ParsedFamily struct {
	Name, Help string
	Type       Type
	Samples    []ParsedSample
}

// ParsedSample is one sample line.
type ParsedSample struct {
	Name   string // with _bucket, _sum or _count for a histogram
	Labels map[string]string
	Value  float64
}

// ParseText reads the text format 0.0.4 strictly, for tests and tools:
// every sample belongs to a family announced by a # TYPE line before it,
// a family's lines are contiguous, names, labels and values are well
// formed, and a histogram's buckets ascend, are cumulative, end with
// le="+Inf" and agree with its _count.
func ParseText(r io.Reader) (map[string]*ParsedFamily, error) {
	fams := map[string]*ParsedFamily{}
	var cur *ParsedFamily
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		fail := func(format string, args ...any) error {
			return fmt.Errorf("line %d %q: %s", n, line, fmt.Sprintf(format, args...))
		}
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE "):
			fields := strings.SplitN(line[len("# HELP "):], " ", 2)
			name := fields[0]
			if !nameRE.MatchString(name) || len(fields) != 2 {
				return nil, fail("bad metric name or missing text")
			}
			f := fams[name]
			if f == nil {
				f = &ParsedFamily{Name: name}
				fams[name] = f
			} else if f != cur {
				return nil, fail("family %s is not contiguous", name)
			}
			cur = f
			if strings.HasPrefix(line, "# HELP ") {
				f.Help = fields[1]
				continue
			}
			if f.Type != "" || len(f.Samples) > 0 {
				return nil, fail("second or late TYPE for %s", name)
			}
			switch t := Type(fields[1]); t {
			case TypeCounter, TypeGauge, TypeHistogram, "summary", "untyped":
				f.Type = t
			default:
				return nil, fail("unknown type %q", fields[1])
			}
		case strings.HasPrefix(line, "#"):
			continue // a comment
		default:
			s, err := parseSample(line)
			if err != nil {
				return nil, fail("%v", err)
			}
			base := s.Name
			if cur != nil && cur.Type == TypeHistogram {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if strings.TrimSuffix(s.Name, suffix) == cur.Name {
						base = cur.Name
					}
				}
			}
			if cur == nil || base != cur.Name || cur.Type == "" {
				return nil, fail("sample outside its family's TYPE")
			}
			cur.Samples = append(cur.Samples, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, f := range fams {
		if f.Type == TypeHistogram {
			if err := checkHistogram(f); err != nil {
				return nil, err
			}
		}
	}
	return fams, nil
}

// parseSample parses `name{l="v",...} value [timestamp]`.
func parseSample(line string) (ParsedSample, error) {
	s := ParsedSample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value")
	}
	s.Name, line = line[:i], line[i:]
	if !nameRE.MatchString(s.Name) {
		return s, fmt.Errorf("bad metric name %q", s.Name)
	}
	if line[0] == '{' {
		line = line[1:]
		for {
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			eq := strings.Index(line, `="`)
			if eq < 0 || !labelRE.MatchString(line[:eq]) {
				return s, fmt.Errorf("bad label at %q", line)
			}
			name := line[:eq]
			line = line[eq+2:]
			var val strings.Builder
			for {
				if line == "" {
					return s, fmt.Errorf("unterminated label value")
				}
				c := line[0]
				line = line[1:]
				if c == '"' {
					break
				}
				if c == '\\' {
					if line == "" {
						return s, fmt.Errorf("bad escape")
					}
					switch line[0] {
					case '\\', '"':
						val.WriteByte(line[0])
					case 'n':
						val.WriteByte('\n')
					default:
						return s, fmt.Errorf("bad escape \\%c", line[0])
					}
					line = line[1:]
					continue
				}
				val.WriteByte(c)
			}
			if _, dup := s.Labels[name]; dup {
				return s, fmt.Errorf("label %s twice", name)
			}
			s.Labels[name] = val.String()
			line = strings.TrimPrefix(line, ",")
		}
	}
	fields := strings.Fields(line)
	if len(fields) < 1 || len(fields) > 2 || !strings.HasPrefix(line, " ") {
		return s, fmt.Errorf("want one value and an optional timestamp after %q", s.Name)
	}
	v, err := parseValue(fields[0])
	if err != nil {
		return s, err
	}
	s.Value = v
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return s, fmt.Errorf("bad timestamp %q", fields[1])
		}
	}
	return s, nil
}

func parseValue(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	return strconv.ParseFloat(s, 64)
}

// checkHistogram checks every series (label set without le) of f.
func checkHistogram(f *ParsedFamily) error {
	type series struct {
		les    []float64
		counts []float64
		count  float64
		hasCnt bool
		hasSum bool
	}
	all := map[string]*series{}
	key := func(labels map[string]string) string {
		var parts []string
		for k, v := range labels {
			if k != "le" {
				parts = append(parts, k+"="+v)
			}
		}
		sort.Strings(parts)
		return strings.Join(parts, ",")
	}
	for _, s := range f.Samples {
		k := key(s.Labels)
		sr := all[k]
		if sr == nil {
			sr = &series{}
			all[k] = sr
		}
		switch s.Name {
		case f.Name + "_bucket":
			le, ok := s.Labels["le"]
			if !ok {
				return fmt.Errorf("%s: bucket without le", f.Name)
			}
			v, err := parseValue(le)
			if err != nil {
				return fmt.Errorf("%s: bad le %q", f.Name, le)
			}
			sr.les = append(sr.les, v)
			sr.counts = append(sr.counts, s.Value)
		case f.Name + "_count":
			sr.count, sr.hasCnt = s.Value, true
		case f.Name + "_sum":
			sr.hasSum = true
		}
	}
	for k, sr := range all {
		n := len(sr.les)
		if n == 0 || !math.IsInf(sr.les[n-1], 1) || !sr.hasCnt || !sr.hasSum || sr.counts[n-1] != sr.count {
			return fmt.Errorf("%s{%s}: needs buckets ending with le=\"+Inf\" equal to _count, and _sum", f.Name, k)
		}
		for i := 1; i < n; i++ {
			if sr.les[i] <= sr.les[i-1] || sr.counts[i] < sr.counts[i-1] {
				return fmt.Errorf("%s{%s}: buckets not ascending or not cumulative", f.Name, k)
			}
		}
	}
	return nil
}
