package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// readmeBase is the server address the README's curl commands use.
const readmeBase = "http://127.0.0.1:8080"

// TestReadmeCurl runs the curl commands of the README's "Web console"
// section against a server, in order, and checks each against the
// "# → STATUS TEXT" line under it (the answer's HTTP status, and TEXT in
// its body; no such line: 200), so the README cannot drift from the code.
func TestReadmeCurl(t *testing.T) {
	cmds := readmeCurls(t)
	if len(cmds) < 5 {
		t.Fatalf("found %d curl commands in the README's Web console section", len(cmds))
	}
	h := newHarness(t, harnessOptions{})
	for _, c := range cmds {
		t.Run(c.line, func(t *testing.T) {
			req, stream := c.request(t, h.url)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != c.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, b)
			}
			if stream { // read until the text shows, as a person watching would
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					if strings.Contains(sc.Text(), c.text) {
						return
					}
				}
				t.Fatalf("the stream ended without %q: %v", c.text, sc.Err())
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			// protojson may put a space after a colon or comma: compare
			// without spaces outside the text.
			if !strings.Contains(squeeze(string(b)), squeeze(c.text)) {
				t.Fatalf("answer %s lacks %s", b, c.text)
			}
		})
	}
}

// readmeCurl is one curl command of the README and what it must answer.
type readmeCurl struct {
	line   string
	args   []string
	status int
	text   string
}

func readmeCurls(t *testing.T) []*readmeCurl {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\n## Web console\n")
	if start < 0 {
		t.Fatal(`README.md has no "## Web console" section`)
	}
	s = s[start+1:]
	if end := strings.Index(s[3:], "\n## "); end >= 0 {
		s = s[:end+3]
	}
	var out []*readmeCurl
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(line, "curl "):
			args, err := shellWords(line)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			out = append(out, &readmeCurl{line: line, args: args[1:], status: 200})
		case strings.HasPrefix(line, "# → ") && len(out) > 0:
			code, text, _ := strings.Cut(strings.TrimPrefix(line, "# → "), " ")
			n, err := strconv.Atoi(code)
			if err != nil {
				t.Fatalf("%s: no status", line)
			}
			out[len(out)-1].status, out[len(out)-1].text = n, text
		}
	}
	return out
}

// request is the HTTP request the curl arguments make, against base
// instead of the README's address; stream is whether curl was asked not
// to buffer (-N): the answer is read line by line.
func (c *readmeCurl) request(t *testing.T, base string) (req *http.Request, stream bool) {
	t.Helper()
	var url, body string
	hdr := http.Header{}
	method := http.MethodGet
	for i := 0; i < len(c.args); i++ {
		a := c.args[i]
		switch {
		case a == "-s":
		case a == "-sN" || a == "-N":
			stream = true
		case (a == "-H" || a == "-d") && i+1 < len(c.args):
			i++
			if a == "-d" {
				body, method = c.args[i], http.MethodPost
				continue
			}
			k, v, _ := strings.Cut(c.args[i], ":")
			hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		case strings.HasPrefix(a, readmeBase):
			url = base + strings.TrimPrefix(a, readmeBase)
		default:
			t.Fatalf("curl argument %q: the test does not know it", a)
		}
	}
	if url == "" {
		t.Fatal("no URL")
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	return req, stream
}

// shellWords splits a command line as sh would, for words that are
// plain or in single or double quotes (without escapes or expansions).
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case '\'', '"':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unclosed %c", c)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func squeeze(s string) string { return strings.ReplaceAll(s, " ", "") }
