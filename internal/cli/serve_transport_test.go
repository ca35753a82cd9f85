package cli

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// serverSettings connects to addr as an HTTP/2 client and returns the
// server's first SETTINGS.
func serverSettings(t *testing.T, addr string) map[http2.SettingID]uint32 {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's settings: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			got := map[http2.SettingID]uint32{}
			_ = sf.ForeachSetting(func(s http2.Setting) error { got[s.ID] = s.Val; return nil })
			return got
		}
	}
}

func TestServeTransportBounds(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		s := startServer(t)
		got := serverSettings(t, s.addr)
		if got[http2.SettingMaxConcurrentStreams] != DefaultMaxConcurrentStreams ||
			got[http2.SettingMaxHeaderListSize] != DefaultMaxHeaderListBytes {
			t.Fatalf("server settings %v, want max concurrent streams %d and max header list size %d",
				got, DefaultMaxConcurrentStreams, DefaultMaxHeaderListBytes)
		}
	})
	t.Run("flags", func(t *testing.T) {
		s := startServer(t, "--max-concurrent-streams", "7", "--max-header-list-bytes", "4096")
		got := serverSettings(t, s.addr)
		if got[http2.SettingMaxConcurrentStreams] != 7 || got[http2.SettingMaxHeaderListSize] != 4096 {
			t.Fatalf("server settings %v, want 7 and 4096", got)
		}
		// A call whose metadata passes the bound fails; the server stays up.
		r := s.run("session", "list", "--token", strings.Repeat("t", 8<<10))
		if r.code != 1 {
			t.Fatalf("a call with 8 KiB of metadata: exit %d (%s), want 1", r.code, r.stderr)
		}
		s.mustRun(t, "session", "list")
	})
	t.Run("windows", func(t *testing.T) {
		s := startServer(t, "--initial-window-bytes", "1048576", "--initial-conn-window-bytes", "4194304", "--write-buffer-bytes", "65536")
		if got := serverSettings(t, s.addr); got[http2.SettingInitialWindowSize] != 1<<20 {
			t.Fatalf("server settings %v, want an initial window of %d", got, 1<<20)
		}
		s.mustRun(t, "session", "list")
	})
	t.Run("handshake timeout", func(t *testing.T) {
		// A connection that never says anything is closed by the server
		// (without the timeout it would stay open for 120s, longer than
		// waitTimeout).
		s := startServer(t, "--handshake-timeout", "50ms")
		conn, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
		_, err = io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server kept a connection that never finished its handshake")
		}
	})
}

func TestServeTransportErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--max-concurrent-streams", "0"}, "--max-concurrent-streams must be positive"},
		{[]string{"--max-header-list-bytes", "100"}, "--max-header-list-bytes must be at least 1024"},
		{[]string{"--handshake-timeout", "0s"}, "--handshake-timeout must be positive"},
		{[]string{"--write-buffer-bytes", "-1"}, "--write-buffer-bytes must not be negative"},
		{[]string{"--initial-window-bytes", "1000"}, "--initial-window-bytes must be 0 or between 65536"},
		{[]string{"--initial-conn-window-bytes", "1000"}, "--initial-conn-window-bytes must be 0 or between 65536"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Run(context.Background(), append([]string{"serve", "--listen", "127.0.0.1:0"}, tc.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.msg)
			}
		})
	}
}
