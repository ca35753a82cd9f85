package client_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// proxy forwards loopback TCP to the server and can cut every connection
// at once, which is how a client sees a network drop.
type proxy struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, target: target}
	go p.serve()
	t.Cleanup(func() { lis.Close(); p.drop() })
	return p
}

func (p *proxy) serve() {
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}

// drop closes every connection through the proxy.
func (p *proxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func startServer(t *testing.T, cfg engine.Config) (addr string) {
	t.Helper()
	addr, _, _ = serveAt(t, "127.0.0.1:0", cfg)
	return addr
}

type change struct {
	rev   int64
	name  string
	value int64
}

// render is how a delivered update is compared with the model.
func render(up *pb.VariableUpdate) string {
	return fmt.Sprintf("%s@%d %s=%d", up.GetUpdateType(), up.GetRevision(), up.GetVariable().GetName(),
		up.GetVariable().GetValue().GetIntegerValue())
}

// expected is what a watch of names with initial values at snapshot must
// deliver, given every acknowledged change.
func expected(names []string, initial map[string]int64, changes []change, snapshot int64) []string {
	cur := maps.Clone(initial)
	i := 0
	for ; i < len(changes) && changes[i].rev <= snapshot; i++ {
		cur[changes[i].name] = changes[i].value
	}
	var out []string
	for _, n := range names {
		out = append(out, fmt.Sprintf("initial_value@%d %s=%d", snapshot, n, cur[n]))
	}
	out = append(out, fmt.Sprintf("initial_values_complete@%d =0", snapshot))
	for _, c := range changes[i:] {
		if slices.Contains(names, c.name) {
			out = append(out, fmt.Sprintf("value_change@%d %s=%d", c.rev, c.name, c.value))
		}
	}
	return out
}

func TestWatchResumesWithoutGapOrDuplicate(t *testing.T) {
	cases := []struct {
		name      string
		cfg       engine.Config
		batched   bool
		dedicated bool
		chaos     bool // cut connections at random
		slow      bool // read slowly into a tiny server buffer
		queue     int  // client.MuxQueueLimit, when set
	}{
		{name: "dropped connections", chaos: true},
		{name: "dropped connections, dedicated", chaos: true, dedicated: true},
		{name: "dropped connections, batched", chaos: true, batched: true},
		{name: "slow consumer cut off, dedicated", cfg: engine.Config{SubscriptionBuffer: 16}, slow: true, dedicated: true},
		{name: "slow consumer cut off, batched", cfg: engine.Config{SubscriptionBuffer: 16}, slow: true, batched: true},
		// On a shared stream the client's reader takes everything the
		// server sends, so it is the client's queue that a slow caller
		// fills (the server's cut-off of one watch of a shared stream is
		// grpcapi's TestMuxSlowConsumerEndsOneWatch).
		{name: "slow reader of a shared stream", slow: true, queue: 256},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.queue > 0 {
				defer func(n int) { client.MuxQueueLimit = n }(client.MuxQueueLimit)
				client.MuxQueueLimit = tc.queue
			}
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			addr := startServer(t, tc.cfg)
			px := newProxy(t, addr)
			direct, err := client.New(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer direct.Close()
			// A fixed 64 KiB flow-control window (no BDP growth), so a
			// reader that stops makes the server's sends block and its
			// subscription overflow.
			viaProxy, err := client.New(px.lis.Addr().String(),
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
			if err != nil {
				t.Fatal(err)
			}
			defer viaProxy.Close()

			if _, err := direct.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
				t.Fatal(err)
			}
			names := []string{"a", "b", "c", "d"}
			initial := map[string]int64{}
			for i, n := range names {
				initial[n] = int64(i)
				if _, err := direct.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: n,
					Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: intValue(int64(i))}); err != nil {
					t.Fatal(err)
				}
			}

			w := viaProxy.Watch(ctx, &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: names,
				IncludeInitialValues: true, HeartbeatInterval: durationpb.New(50 * time.Millisecond)},
				// Heartbeats come back to this loop, so it notices the end
				// even when its last change arrived long ago.
				client.WatchOptions{Batched: tc.batched, Dedicated: tc.dedicated, Heartbeats: true, MaxBackoff: 20 * time.Millisecond})
			defer w.Close()
			first, err := w.Next() // the stream is up: writes from now on race with it
			for err == nil && first.GetUpdateType() == "heartbeat" {
				first, err = w.Next()
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []string{render(first)}

			var (
				mu      sync.Mutex
				changes []change
				writers sync.WaitGroup
				done    atomic.Bool
			)
			for wr := range 3 {
				writers.Add(1)
				go func() {
					defer writers.Done()
					rng := rand.New(rand.NewPCG(seed, uint64(wr)))
					for i := range 400 {
						v := int64(wr+1)*100_000 + int64(i)
						perm := rng.Perm(len(names))[:1+rng.IntN(3)] // 2-3 variables: an atomic set
						req := &pb.SetVariablesRequest{SessionId: "s", Atomic: true}
						for j, p := range perm {
							req.Updates = append(req.Updates, &pb.SetVariableRequest{VariableIdentifier: names[p], Value: intValue(v*10 + int64(j))})
						}
						res, err := direct.SetVariables(ctx, req)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						for j, p := range perm {
							changes = append(changes, change{res.Revision, names[p], v*10 + int64(j)})
						}
						mu.Unlock()
					}
				}()
			}
			if tc.chaos {
				go func() {
					rng := rand.New(rand.NewPCG(seed, 77))
					for !done.Load() {
						time.Sleep(time.Duration(2+rng.IntN(15)) * time.Millisecond)
						px.drop()
					}
				}()
			}
			go func() { writers.Wait(); done.Store(true) }()

			var final int64
			for {
				if done.Load() && final == 0 {
					res, err := direct.ListVariables(ctx, &pb.ListVariablesRequest{SessionId: "s"})
					if err != nil {
						t.Fatal(err)
					}
					final = res.Revision
				}
				if final != 0 && w.Revision() >= final {
					break
				}
				up, err := w.Next()
				if err != nil {
					t.Fatalf("watch ended: %v (after %d resumes)", err, w.Resumes())
				}
				if up.GetUpdateType() != "heartbeat" {
					got = append(got, render(up))
				}
				if tc.slow && len(got)%300 == 50 {
					// Stop reading until the writers are far ahead.
					mu.Lock()
					target := len(changes) + 1000
					mu.Unlock()
					for !done.Load() {
						mu.Lock()
						n := len(changes)
						mu.Unlock()
						if n >= target {
							break
						}
						time.Sleep(time.Millisecond)
					}
				}
			}
			t.Logf("%d updates, %d resumes", len(got), w.Resumes())
			if w.Resumes() == 0 && tc.slow {
				t.Error("the slow reader was never cut off: the test did not test resuming")
			}
			slices.SortStableFunc(changes, func(a, b change) int { return int(a.rev - b.rev) })
			snapshot := first.GetRevision()
			want := expected(names, initial, changes, snapshot)
			if !slices.Equal(got, want) {
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						lo, hi := max(i-4, 0), min(i+4, len(got), len(want))
						t.Fatalf("update %d of %d/%d: got %s, want %s\ngot  %q\nwant %q", i, len(got), len(want), got[i], want[i], got[lo:hi], want[lo:hi])
					}
				}
				t.Fatalf("got %d updates, want %d", len(got), len(want))
			}
		})
	}
}

func intValue(i int64) *pb.Value {
	return &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: i}}
}
