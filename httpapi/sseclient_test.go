package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
)

// sseEvent is one Server-Sent Event as a client parses it.
type sseEvent struct {
	name, id, data string
}

// json decodes the event's data.
func (e sseEvent) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(e.data), &m); err != nil {
		t.Fatalf("event %s: data %q is not JSON: %v", e.name, e.data, err)
	}
	return m
}

// sseStream is one open watch response.
type sseStream struct {
	t      testing.TB
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
	lastID string // the id of the last event with one, as EventSource keeps it
}

// openSSE opens GET url with the Last-Event-ID header when lastID is not
// empty. The stream is closed at the test's end or by close.
func openSSE(t testing.TB, client *http.Client, url, token, lastID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &sseStream{t: t, resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel, lastID: lastID}
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// next reads the next event; ok is false at the end of the response.
func (s *sseStream) next() (ev sseEvent, ok bool) {
	s.t.Helper()
	ev, err := readEvent(s.r)
	if err == io.EOF {
		return ev, false
	}
	if err != nil {
		s.t.Fatalf("reading the event stream: %v", err)
	}
	if ev.id != "" {
		s.lastID = ev.id
	}
	return ev, true
}

// readEvent reads the next event, skipping retry-only blocks and comments;
// io.EOF at the end of the response.
func readEvent(r *bufio.Reader) (ev sseEvent, err error) {
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return ev, io.EOF
		}
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.name != "" || ev.data != "" {
				return ev, nil
			}
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			ev.id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[len("data: "):]
		case strings.HasPrefix(line, "retry: "), strings.HasPrefix(line, ":"):
		default:
			return ev, fmt.Errorf("unexpected event stream line %q", line)
		}
	}
}

// mustNext is next that fails the test at the end of the response.
func (s *sseStream) mustNext() sseEvent {
	s.t.Helper()
	ev, ok := s.next()
	if !ok {
		s.t.Fatal("the event stream ended")
	}
	return ev
}

// expect reads the next event and checks its name.
func (s *sseStream) expect(name string) sseEvent {
	s.t.Helper()
	ev := s.mustNext()
	if ev.name != name {
		s.t.Fatalf("got event %s %s, want %s", ev.name, ev.data, name)
	}
	return ev
}

// nextUpdate reads up to the next update event, skipping heartbeats.
func (s *sseStream) nextUpdate() sseEvent {
	s.t.Helper()
	for {
		ev := s.mustNext()
		switch ev.name {
		case "heartbeat":
		case "update":
			return ev
		default:
			s.t.Fatalf("got event %s %s, want update", ev.name, ev.data)
		}
	}
}

// revisionOf is the revision of an id INCARNATION:REVISION.
func revisionOf(t testing.TB, id string) int64 {
	t.Helper()
	_, rev, err := parseEventID(id)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// smallBuffers makes h's HTTP server and the returned client use tiny
// socket buffers, so that a client that stops reading makes the server's
// writes block (and its subscription fill) after a few KiB rather than
// the megabytes a loopback connection buffers by default.
func smallBuffers(t *testing.T, h *harness, cfg Config) *http.Client {
	t.Helper()
	hs := httptest.NewUnstartedServer(New(cfg))
	hs.Listener = smallBufListener{hs.Listener}
	hs.Start()
	t.Cleanup(func() {
		h.api.Shutdown()
		hs.Close()
	})
	h.url = hs.URL
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableCompression: true}}
}

type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// watchURL is h's GET /v1/watch URL with the query params kv (key, value
// pairs).
func (h *harness) watchURL(kv ...string) string {
	var b strings.Builder
	b.WriteString(h.url + "/v1/watch?")
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(kv[i] + "=" + kv[i+1])
	}
	return b.String()
}
