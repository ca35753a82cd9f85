package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait: a failure deadline, never an expected
// duration.
const waitTimeout = 10 * time.Second

// syncBuffer is an output stream that commands write while tests read it,
// and that wakes tests waiting for some text.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the output contains want, and returns the output.
func (b *syncBuffer) waitFor(t *testing.T, want string) string {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		b.mu.Lock()
		out, changed := b.buf.String(), b.changed
		b.mu.Unlock()
		if strings.Contains(out, want) {
			return out
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %q in output:\n%s", want, out)
		}
	}
}

// server is varwatch serve running in-process on a free port.
type server struct {
	addr   string
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan int // the exit code of serve
	once   sync.Once
}

func startServer(t *testing.T, flags ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{stderr: newSyncBuffer(), cancel: cancel, done: make(chan int, 1)}
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--log-json"}, flags...)
	go func() { s.done <- Run(ctx, args, io.Discard, s.stderr) }()
	out := s.stderr.waitFor(t, `"@message":"listening"`)
	for _, line := range strings.Split(out, "\n") {
		var entry struct {
			Message string `json:"@message"`
			Addr    string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Message == "listening" {
			s.addr = entry.Addr
		}
	}
	if s.addr == "" {
		t.Fatalf("no listen address in the log:\n%s", out)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop cancels serve (as SIGINT would) and waits for exit code 0.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case code := <-s.done:
			if code != 0 {
				t.Errorf("serve exited %d; log:\n%s", code, s.stderr.String())
			}
		case <-time.After(waitTimeout):
			t.Error("serve did not stop")
		}
	})
}

// result is what one Run printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// run runs a client command against s and waits for it.
func (s *server) run(args ...string) result {
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	code := Run(ctx, append([]string{"--server", s.addr}, args...), &stdout, &stderr)
	return result{stdout.String(), stderr.String(), code}
}

// mustRun is run, failing the test unless the command succeeds.
func (s *server) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := s.run(args...)
	if r.code != 0 {
		t.Fatalf("varwatch %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// background is a long-running command (watch) with live output.
type background struct {
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan int
}

func (s *server) start(t *testing.T, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{stdout: newSyncBuffer(), stderr: newSyncBuffer(), cancel: cancel, done: make(chan int, 1)}
	go func() { b.done <- Run(ctx, append([]string{"--server", s.addr}, args...), b.stdout, b.stderr) }()
	t.Cleanup(func() {
		cancel()
		<-b.done
	})
	return b
}

// exit waits for the command to end and returns its exit code.
func (b *background) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-b.done:
		b.done <- code // for the cleanup
		return code
	case <-time.After(waitTimeout):
		t.Fatalf("command did not end; stdout:\n%s\nstderr:\n%s", b.stdout.String(), b.stderr.String())
	}
	return 0
}
