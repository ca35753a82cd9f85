package cluster

import (
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// testLogger is a node's logger in tests: its warnings and errors go to
// t.Log, so that a failing test (or -v) shows what the node saw, such as
// publishes JetStream did not store, and a passing one stays quiet.
func testLogger(t testing.TB, name string) hclog.Logger {
	w := &testLogWriter{t: t}
	// Cleanups run last-registered first: this one runs after the node's
	// Close, which stops every goroutine that logs, and t.Log must not be
	// called once the test has ended.
	t.Cleanup(w.close)
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn, Output: w})
}

type testLogWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}
