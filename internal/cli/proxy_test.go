package cli

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// proxy is a TCP proxy between a client command and a server, which a
// test can cut (every open connection dropped, as a network failure does)
// and pause (connections accepted and closed at once, as a server that is
// away), or point at another server.
type proxy struct {
	lis net.Listener

	mu       sync.Mutex // guards backend, conns, accepted, changed
	backend  string     // "" while paused
	conns    map[net.Conn]bool
	accepted int            // connections forwarded so far
	changed  chan struct{}  // closed and replaced when accepted grows
	wg       sync.WaitGroup // accept loop and copiers
}

func startProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	return startProxyOn(t, "tcp", "127.0.0.1:0", backend)
}

// startProxyOn is startProxy listening on another network (unix).
func startProxyOn(t *testing.T, network, address, backend string) *proxy {
	t.Helper()
	lis, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, backend: backend, conns: map[net.Conn]bool{}, changed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = lis.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		backend := p.backend
		p.mu.Unlock()
		if backend == "" {
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", backend)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = true, true
		p.accepted++
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// pipe copies from src to dst until either ends, then closes both.
func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// cut drops every open connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// pause cuts every connection and refuses new ones until resume.
func (p *proxy) pause() {
	p.mu.Lock()
	p.backend = ""
	p.mu.Unlock()
	p.cut()
}

// resume forwards new connections to backend.
func (p *proxy) resume(backend string) {
	p.mu.Lock()
	p.backend = backend
	p.mu.Unlock()
}

// forwarded is how many connections the proxy has forwarded so far.
func (p *proxy) forwarded() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// waitForwarded waits until the proxy has forwarded n connections.
func (p *proxy) waitForwarded(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		p.mu.Lock()
		got, changed := p.accepted, p.changed
		p.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for connection %d through the proxy (%d so far)", n, got)
		}
	}
}
