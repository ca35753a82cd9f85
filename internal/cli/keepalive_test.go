package cli

import (
	"strings"
	"testing"
	"time"
)

// TestServeWatchKeepsSessionsAlive: by default a session outlives its
// --session-ttl while a watch is open on it; with
// --watch-keeps-sessions-alive=false the watch ends with it. Time is
// measured by heartbeats, at least 50ms apart: ten of them span more
// than the 200ms TTL.
func TestServeWatchKeepsSessionsAlive(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		s := startServer(t, "--session-ttl", "200ms")
		if !strings.Contains(s.stderr.String(), `"watch_keeps_sessions_alive":true`) {
			t.Fatalf("the listening line does not say watches keep sessions alive:\n%s", s.stderr.String())
		}
		s.mustRun(t, "session", "create", "--id", "s")
		w := s.start(t, "watch", "s", "--heartbeat", "50ms")
		waitCount(t, w.stdout, "heartbeat", 10)
		if out := w.stdout.String(); strings.Contains(out, "session_closed") {
			t.Fatalf("the watched session expired:\n%s", out)
		}
		s.mustRun(t, "session", "get", "s")
	})
	t.Run("off", func(t *testing.T) {
		s := startServer(t, "--session-ttl", "200ms", "--watch-keeps-sessions-alive=false")
		if !strings.Contains(s.stderr.String(), `"watch_keeps_sessions_alive":false`) {
			t.Fatalf("the listening line does not say watches leave sessions to expire:\n%s", s.stderr.String())
		}
		s.mustRun(t, "session", "create", "--id", "s")
		w := s.start(t, "watch", "s", "--heartbeat", "50ms")
		w.stdout.waitFor(t, "session_closed")
		if code := w.exit(t); code != 0 {
			t.Fatalf("watch exited %d after session_closed; stderr:\n%s", code, w.stderr.String())
		}
	})
}

// waitCount waits until b holds n occurrences of s.
func waitCount(t *testing.T, b *syncBuffer, s string, n int) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		b.mu.Lock()
		out, changed := b.buf.String(), b.changed
		b.mu.Unlock()
		if strings.Count(out, s) >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %d of %q in output:\n%s", n, s, out)
		}
	}
}
