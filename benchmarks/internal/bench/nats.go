package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsPeer is an embedded NATS server with JetStream (memory storage) on
// loopback; each row gets its own KV bucket.
type natsPeer struct {
	srv *natsserver.Server
	dir string
	url string
	seq atomic.Int64
}

func startNATS() (*natsPeer, error) {
	dir, err := os.MkdirTemp("", "varwatch-bench-nats-")
	if err != nil {
		return nil, err
	}
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, JetStream: true, StoreDir: dir,
		JetStreamMaxMemory: 2 << 30, JetStreamMaxStore: 2 << 30, NoLog: true, NoSigs: true, MaxPending: 256 << 20,
		JetStreamLimits: natsserver.JSLimitOpts{DefaultMaxConsumers: -1}}) // a KV watch is a consumer: 10k of them
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		_ = os.RemoveAll(dir)
		return nil, errors.New("nats server not ready after 30s")
	}
	return &natsPeer{srv: srv, dir: dir, url: srv.ClientURL()}, nil
}

func (p *natsPeer) name() string { return "nats" }

func (p *natsPeer) close() {
	p.srv.Shutdown()
	p.srv.WaitForShutdown()
	_ = os.RemoveAll(p.dir)
}

// natsConn is a client connection with its JetStream context.
type natsConn struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (p *natsPeer) connect() (*natsConn, error) {
	return p.connectWith(jetstream.WithPublishAsyncMaxPending(1024))
}

// connectWith is connect with other JetStream options.
func (p *natsPeer) connectWith(opts ...jetstream.JetStreamOpt) (*natsConn, error) {
	nc, err := nats.Connect(p.url, nats.MaxReconnects(0))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsConn{nc: nc, js: js}, nil
}

func (p *natsPeer) system(_ context.Context, conns int) (system, error) {
	return &natsSystem{p: p, bucket: fmt.Sprintf("bench%d", p.seq.Add(1)), nconns: max(conns, 1)}, nil
}

type natsSystem struct {
	p      *natsPeer
	bucket string
	nconns int // streams are spread round-robin over this many connections
	// mu guards conns: streams open concurrently.
	mu    sync.Mutex
	conns []*natsConn // streams share these; the first also prepared the bucket
	keys  []string
}

func (s *natsSystem) prepare(ctx context.Context, n int) error {
	c, err := s.conn(0)
	if err != nil {
		return err
	}
	kv, err := c.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.bucket, Storage: jetstream.MemoryStorage, History: 64})
	if err != nil {
		return err
	}
	s.keys = make([]string, n)
	for k := range n {
		s.keys[k] = "k" + strconv.Itoa(k)
		if _, err := kv.Put(ctx, s.keys[k], []byte("-1")); err != nil {
			return err
		}
	}
	return nil
}

// conn is stream i's connection: streams share nconns connections, as a
// real client process would.
func (s *natsSystem) conn(i int) (*natsConn, error) {
	want := i % s.nconns
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.conns) <= want {
		c, err := s.p.connect()
		if err != nil {
			return nil, err
		}
		s.conns = append(s.conns, c)
	}
	return s.conns[want], nil
}

func (s *natsSystem) openStream(ctx context.Context, i int) (stream, error) {
	c, err := s.conn(i)
	if err != nil {
		return nil, err
	}
	kv, err := c.js.KeyValue(ctx, s.bucket)
	if err != nil {
		return nil, err
	}
	// UpdatesOnly: an ordered consumer delivering from the next sequence;
	// it exists when WatchAll returns.
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, err
	}
	return &natsStream{w: w}, nil
}

func (s *natsSystem) newWriter(ctx context.Context) (writer, error) {
	c, err := s.p.connect()
	if err != nil {
		return nil, err
	}
	kv, err := c.js.KeyValue(ctx, s.bucket)
	if err != nil {
		c.nc.Close()
		return nil, err
	}
	return &natsWriter{s: s, c: c, kv: kv}, nil
}

func (s *natsSystem) close() {
	if len(s.conns) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.conns[0].js.DeleteKeyValue(ctx, s.bucket)
		cancel()
	}
	for _, c := range s.conns {
		c.nc.Close()
	}
}

type natsStream struct {
	w jetstream.KeyWatcher
}

func (s *natsStream) recv(buf []event) ([]event, error) {
	buf = buf[:0]
	add := func(e jetstream.KeyValueEntry) error {
		if e == nil {
			return nil // end of (no) initial values
		}
		if e.Operation() != jetstream.KeyValuePut {
			return fmt.Errorf("unexpected %s", e.Operation())
		}
		k, err := strconv.Atoi(e.Key()[1:])
		if err != nil {
			return err
		}
		v, err := strconv.ParseInt(string(e.Value()), 10, 64)
		if err != nil {
			return err
		}
		buf = append(buf, event{key: k, val: v, rev: int64(e.Revision())})
		return nil
	}
	for len(buf) == 0 {
		e, ok := <-s.w.Updates()
		if !ok {
			return nil, errors.New("watch closed")
		}
		if err := add(e); err != nil {
			return nil, err
		}
		for more := true; more && len(buf) < 256; {
			select {
			case e, ok := <-s.w.Updates():
				if !ok {
					return buf, nil
				}
				if err := add(e); err != nil {
					return nil, err
				}
			default:
				more = false
			}
		}
	}
	return buf, nil
}

func (s *natsStream) close() { _ = s.w.Stop() }

type natsWriter struct {
	s  *natsSystem
	c  *natsConn
	kv jetstream.KeyValue
}

// write: one key is a synchronous Put; several are pipelined async
// publishes to the bucket's subjects (in order on one connection), then
// every ack is awaited.
func (w *natsWriter) write(ctx context.Context, kvs []kv) error {
	if len(kvs) == 1 {
		_, err := w.kv.Put(ctx, w.s.keys[kvs[0].key], strconv.AppendInt(nil, kvs[0].val, 10))
		return err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(kvs))
	for _, kv := range kvs {
		f, err := w.c.js.PublishAsync("$KV."+w.s.bucket+"."+w.s.keys[kv.key], strconv.AppendInt(nil, kv.val, 10))
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (w *natsWriter) close() { w.c.nc.Close() }
