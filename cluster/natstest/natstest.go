// Package natstest runs a JetStream cluster inside a test process: n
// nats-server instances on loopback ports, each with its store in a
// temporary directory, routed to one another. Tests of clustered varwatch
// need nothing installed.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a running JetStream cluster. Its methods are for one
// goroutine.
type Cluster struct {
	t       testing.TB // nil when made by New
	opts    []*server.Options
	servers []*server.Server // nil while killed
}

// Start runs an n-server JetStream cluster until the test ends, with
// opts applied to every server.
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c, err := New(n, t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(c.Close)
	return c
}

// New runs an n-server JetStream cluster, with the servers' stores under
// dir, until Close: for a program (the benchmark harness) rather than a
// test.
func New(n int, dir string, opts ...Option) (*Cluster, error) {
	c := &Cluster{servers: make([]*server.Server, n)}
	clientPorts, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	routePorts, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	var routes []*url.URL
	for _, p := range routePorts {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   filepath.Join(dir, fmt.Sprint("n", i)),
			NoLog:      true,
			NoSigs:     true,
			MaxPayload: 8 << 20,
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: "varwatch-test", Host: "127.0.0.1", Port: routePorts[i]}
			o.Routes = routes
		}
		for _, opt := range opts {
			opt(o)
		}
		c.opts = append(c.opts, o)
	}
	for i := range n {
		if err := c.start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close stops every server.
func (c *Cluster) Close() {
	for i := range c.servers {
		c.Kill(i)
	}
}

// freePorts returns n loopback ports free a moment ago: the servers need
// to know each other's route ports before any of them listens, and a
// server restarted must come back on its own.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// URL is the client URL of every server, comma-separated, as
// nats.Connect and varwatch serve --cluster take it.
func (c *Cluster) URL() string {
	var us []string
	for _, o := range c.opts {
		us = append(us, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(us, ",")
}

// ServerURL is server i's client URL alone.
func (c *Cluster) ServerURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port)
}

// Kill stops server i (a no-op when it is stopped). Its store stays, for
// Restart.
func (c *Cluster) Kill(i int) {
	if s := c.servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.servers[i] = nil
	}
}

// Restart starts server i again on its ports and store (a no-op when it
// runs), and waits until it takes connections. A failure fails the test
// (or, for a cluster made by New, panics).
func (c *Cluster) Restart(i int) {
	if err := c.start(i); err != nil {
		if c.t == nil {
			panic(err)
		}
		c.t.Helper()
		c.t.Fatal(err)
	}
}

func (c *Cluster) start(i int) error {
	if c.servers[i] != nil {
		return nil
	}
	o := *c.opts[i]
	s, err := server.NewServer(&o)
	if err != nil {
		return fmt.Errorf("nats server %d: %w", i, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats server %d did not start", i)
	}
	c.servers[i] = s
	return nil
}
