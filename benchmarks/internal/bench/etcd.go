package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// etcdPeer is an embedded single-member etcd on loopback without fsync;
// each row gets its own key prefix.
type etcdPeer struct {
	e   *embed.Etcd
	dir string
	url string
	seq atomic.Int64
}

func freeURL() (url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, err
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}, nil
}

func startEtcd(context.Context) (*etcdPeer, error) {
	dir, err := os.MkdirTemp("", "varwatch-bench-etcd-")
	if err != nil {
		return nil, err
	}
	cu, err := freeURL()
	if err != nil {
		return nil, err
	}
	pu, err := freeURL()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "bench"
	cfg.Dir = dir
	cfg.UnsafeNoFsync = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.QuotaBackendBytes = 8 << 30
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		_ = os.RemoveAll(dir)
		return nil, errors.New("etcd not ready after 60s")
	}
	return &etcdPeer{e: e, dir: dir, url: cu.String()}, nil
}

func (p *etcdPeer) name() string { return "etcd" }

func (p *etcdPeer) close() {
	p.e.Close()
	_ = os.RemoveAll(p.dir)
}

func (p *etcdPeer) client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{p.url}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
}

func (p *etcdPeer) system(_ context.Context, conns int) (system, error) {
	return &etcdSystem{p: p, prefix: fmt.Sprintf("b%d/", p.seq.Add(1)), nclients: max(conns, 1)}, nil
}

type etcdSystem struct {
	p        *etcdPeer
	prefix   string
	nclients int // streams are spread round-robin over this many clients
	// mu guards clients: streams open concurrently.
	mu      sync.Mutex
	clients []*clientv3.Client // streams share these
	keys    []string
	rev     int64 // revision after prepare: watches start after it
}

func (s *etcdSystem) prepare(ctx context.Context, n int) error {
	c, err := s.client(0)
	if err != nil {
		return err
	}
	s.keys = make([]string, n)
	for k := range n {
		s.keys[k] = s.prefix + strconv.Itoa(k)
		r, err := c.Put(ctx, s.keys[k], "-1")
		if err != nil {
			return err
		}
		s.rev = r.Header.Revision
	}
	return nil
}

// client is stream i's client (each its own connection): streams share
// nclients of them, and the etcd client puts all the watches of one
// client on one gRPC stream.
func (s *etcdSystem) client(i int) (*clientv3.Client, error) {
	want := i % s.nclients
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.clients) <= want {
		c, err := s.p.client()
		if err != nil {
			return nil, err
		}
		s.clients = append(s.clients, c)
	}
	return s.clients[want], nil
}

func (s *etcdSystem) openStream(ctx context.Context, i int) (stream, error) {
	c, err := s.client(i)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	// Starting at an explicit revision is etcd's way to miss nothing.
	ch := c.Watch(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(s.rev+1))
	return &etcdStream{s: s, ch: ch, cancel: cancel}, nil
}

func (s *etcdSystem) newWriter(context.Context) (writer, error) {
	c, err := s.p.client()
	if err != nil {
		return nil, err
	}
	return &etcdWriter{s: s, c: c}, nil
}

func (s *etcdSystem) close() {
	for _, c := range s.clients {
		_ = c.Close()
	}
}

type etcdStream struct {
	s      *etcdSystem
	ch     clientv3.WatchChan
	cancel context.CancelFunc
}

func (st *etcdStream) recv(buf []event) ([]event, error) {
	buf = buf[:0]
	for len(buf) == 0 {
		r, ok := <-st.ch
		if !ok {
			return nil, errors.New("watch channel closed")
		}
		if err := r.Err(); err != nil {
			return nil, err
		}
		for _, ev := range r.Events {
			if ev.Type != clientv3.EventTypePut {
				return nil, fmt.Errorf("unexpected %s", ev.Type)
			}
			k, err := strconv.Atoi(strings.TrimPrefix(string(ev.Kv.Key), st.s.prefix))
			if err != nil {
				return nil, err
			}
			v, err := strconv.ParseInt(string(ev.Kv.Value), 10, 64)
			if err != nil {
				return nil, err
			}
			buf = append(buf, event{key: k, val: v, rev: ev.Kv.ModRevision})
		}
	}
	return buf, nil
}

func (st *etcdStream) close() { st.cancel() }

type etcdWriter struct {
	s *etcdSystem
	c *clientv3.Client
}

// write: one key is a Put; several are Txns of puts (distinct keys, one
// revision each), etcd's way to write in bulk.
func (w *etcdWriter) write(ctx context.Context, kvs []kv) error {
	if len(kvs) == 1 {
		_, err := w.c.Put(ctx, w.s.keys[kvs[0].key], strconv.FormatInt(kvs[0].val, 10))
		return err
	}
	// A Txn may not name a key twice: a repeated key starts the next one.
	var ops []clientv3.Op
	seen := map[int]bool{}
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := w.c.Txn(ctx).Then(ops...).Commit()
		ops, seen = ops[:0], map[int]bool{}
		return err
	}
	for _, kv := range kvs {
		if seen[kv.key] {
			if err := flush(); err != nil {
				return err
			}
		}
		seen[kv.key] = true
		ops = append(ops, clientv3.OpPut(w.s.keys[kv.key], strconv.FormatInt(kv.val, 10)))
	}
	return flush()
}

func (w *etcdWriter) close() { _ = w.c.Close() }
