package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// The tests' varwatch serve processes.

// buildBinary compiles this command into dir.
func buildBinary(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "varwatch")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// server is one run of varwatch serve.
type server struct {
	cmd         *exec.Cmd
	addr        string
	metricsAddr string // of --metrics-listen, if given
	log         *syncBuffer
	done        chan struct{} // closed when the process has exited
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer runs the binary's serve with args (after --listen on a free
// loopback port and --log-json) and waits for its "listening" line, and
// for "metrics listening" too when args hold --metrics-listen.
func startServer(t testing.TB, bin string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--log-json"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	addrs := make(chan [2]string, 2) // a log message and its address
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(s.log, line)
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && (m["@message"] == "listening" || m["@message"] == "metrics listening") {
				a, _ := m["addr"].(string)
				select {
				case addrs <- [2]string{m["@message"].(string), a}:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(s.done)
	}()
	wantMetrics := slices.Contains(args, "--metrics-listen")
	timeout := time.After(60 * time.Second)
	for s.addr == "" || wantMetrics && s.metricsAddr == "" {
		select {
		case a := <-addrs:
			if a[0] == "listening" {
				s.addr = a[1]
			} else {
				s.metricsAddr = a[1]
			}
		case <-s.done:
			t.Fatalf("server exited before listening:\n%s", s.log)
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("server did not listen within a minute:\n%s", s.log)
		}
	}
	return s
}

// stop ends the server with sig and waits for it to exit.
func (s *server) stop(t testing.TB, sig os.Signal) {
	t.Helper()
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Fatalf("server did not exit after %v:\n%s", sig, s.log)
	}
}

func dial(t testing.TB, addr string) (pb.UnifiedBridgeClient, func()) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return pb.NewUnifiedBridgeClient(conn), func() { _ = conn.Close() }
}
