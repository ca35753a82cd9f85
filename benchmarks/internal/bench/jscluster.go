package bench

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// jsCluster is an n-server NATS JetStream cluster embedded in the
// harness's process: each server on its own loopback ports with its file
// store in a temporary directory, routed to the others. It is what the
// cluster scenario's varwatch nodes keep their log on.
//
// cluster/natstest starts the same for the cluster package's tests, but
// it takes a testing.TB (its failures are test failures), which a
// command has not; this is its non-test twin.
type jsCluster struct {
	dir     string
	servers []*natsserver.Server
	urls    []string
}

func startJSCluster(n int) (*jsCluster, error) {
	dir, err := os.MkdirTemp("", "varwatch-bench-jscluster-")
	if err != nil {
		return nil, err
	}
	c := &jsCluster{dir: dir}
	clientPorts, err := freePorts(n)
	if err != nil {
		c.close()
		return nil, err
	}
	routePorts, err := freePorts(n)
	if err != nil {
		c.close()
		return nil, err
	}
	var routes []*url.URL
	for _, p := range routePorts {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	for i := range n {
		o := &natsserver.Options{
			ServerName: fmt.Sprintf("js%d", i),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   filepath.Join(dir, fmt.Sprint(i)),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    natsserver.ClusterOpts{Name: "varwatch-bench", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     routes,
		}
		s, err := natsserver.NewServer(o)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("nats server %d: %w", i, err)
		}
		go s.Start()
		c.servers = append(c.servers, s)
		c.urls = append(c.urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	for i, s := range c.servers {
		if !s.ReadyForConnections(30 * time.Second) {
			c.close()
			return nil, fmt.Errorf("nats server %d not ready after 30s", i)
		}
	}
	return c, nil
}

// url is every server's client URL, comma-separated, as cluster.Config
// (and varwatch serve --cluster) takes it.
func (c *jsCluster) url() string { return strings.Join(c.urls, ",") }

func (c *jsCluster) close() {
	for _, s := range c.servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
	_ = os.RemoveAll(c.dir)
}

// freePorts returns n loopback ports that were free a moment ago: the
// servers must know each other's route ports before any of them listens.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
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
