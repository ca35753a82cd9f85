package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/varwatch/varwatch/engine"
)

var long = flag.Bool("cluster.long", false, "run the cluster's randomized tests for longer")

// The linearizability check (as etcd's robustness tests make it): clients
// spread over the nodes call Get (both variables at one revision), Set,
// compare-and-set and atomic two-variable sets, some with deadlines short
// enough to time out, and porcupine checks that the history is
// linearizable against a sequential model of two versioned registers.

// linState is the model's state: each variable's value and version.
type linState struct{ x, vx, y, vy int64 }

type linInput struct {
	op      string // get, set, cas, multi
	key     int    // 0: x, 1: y (set, cas)
	value   int64  // set, cas; multi sets x to value and y to value2
	value2  int64
	version int64 // cas: the expected version
}

type linOutput struct {
	unknown bool // timed out or failed ambiguously: it may have applied
	ok      bool // the write applied (false: a version conflict)
	read    linState
}

var registers = porcupine.Model{
	Init: func() any { return linState{vx: 1, vy: 1} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(linState), input.(linInput), output.(linOutput)
		set := func(s linState, key int, v int64) linState {
			if key == 0 {
				s.x, s.vx = v, s.vx+1
			} else {
				s.y, s.vy = v, s.vy+1
			}
			return s
		}
		switch in.op {
		case "get":
			return out.unknown || out.read == s, s
		case "set":
			return true, set(s, in.key, in.value)
		case "multi":
			return true, set(set(s, 0, in.value), 1, in.value2)
		case "cas":
			cur := s.vx
			if in.key == 1 {
				cur = s.vy
			}
			matches := cur == in.version
			switch {
			case out.unknown:
				if matches {
					return true, set(s, in.key, in.value)
				}
				return true, s
			case out.ok:
				return matches, set(s, in.key, in.value)
			default:
				return !matches, s
			}
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string { return fmt.Sprintf("%+v -> %+v", input, output) },
}

// linHistory runs the clients and returns their history. read is how a
// client reads on node n.
func linHistory(t *testing.T, nodes []*node, session string, clients, ops int, seed uint64, read func(ctx context.Context, n *node) error) []porcupine.Operation {
	ctx := context.Background()
	start := time.Now()
	var mu sync.Mutex
	var history []porcupine.Operation
	var wg sync.WaitGroup
	for c := range clients {
		rng := rand.New(rand.NewPCG(seed, uint64(c)))
		wg.Go(func() {
			for range ops {
				n := nodes[rng.IntN(len(nodes))]
				in := linInput{key: rng.IntN(2), value: rng.Int64N(1000), value2: rng.Int64N(1000)}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if rng.IntN(10) == 0 {
					cancel()
					cctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(2000))*time.Microsecond)
				}
				call := time.Since(start).Nanoseconds()
				var out linOutput
				var err error
				name := []string{"x", "y"}[in.key]
				switch op := rng.IntN(10); {
				case op < 4:
					in.op = "get"
					if err = read(cctx, n); err == nil {
						var res engine.GetManyResult
						res, err = n.e.GetMany(cctx, session, []string{"x", "y"})
						if err == nil {
							out.read = linState{res.Found[0].Value.Integer(), res.Found[0].Version, res.Found[1].Value.Integer(), res.Found[1].Version}
						}
					}
				case op < 6:
					in.op = "set"
					_, err = n.e.Set(cctx, engine.SetRequest{Session: session, Variable: name, Value: engine.Integer(in.value)})
				case op < 8:
					in.op = "cas"
					in.version = int64(1 + rng.IntN(4))
					if v, gerr := n.e.Get(cctx, session, name); gerr == nil {
						in.version = v.Version // mostly current: some win, some conflict
					}
					_, err = n.e.Set(cctx, engine.SetRequest{Session: session, Variable: name, Value: engine.Integer(in.value),
						HasExpectedVersion: true, ExpectedVersion: in.version})
				default:
					in.op = "multi"
					_, err = n.e.SetMany(cctx, engine.SetManyRequest{Session: session, Atomic: true, Sets: []engine.SetRequest{
						{Variable: "x", Value: engine.Integer(in.value)}, {Variable: "y", Value: engine.Integer(in.value2)}}})
				}
				cancel()
				ret := time.Since(start).Nanoseconds()
				var vc *engine.VersionConflictError
				switch {
				case err == nil:
					out.ok = true
				case errors.As(err, &vc):
				case in.op == "get":
					continue // a read that failed says nothing
				default:
					// Timed out, or the log failed ambiguously: it may
					// apply at any point after its call.
					out.unknown, ret = true, 1<<62
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return history
}

// linSession creates session with the two variables, and waits until
// every node has it.
func linSession(t *testing.T, nodes []*node, session string) {
	ctx := context.Background()
	if _, _, err := nodes[0].e.CreateSession(ctx, engine.CreateSessionRequest{ID: session}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"x", "y"} {
		if _, err := nodes[0].e.Register(ctx, engine.RegisterRequest{Session: session, Name: name, Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if err := n.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// lagging makes node n lag in bursts until stop is closed.
func lagging(n *node, stop <-chan struct{}, done *sync.WaitGroup) {
	done.Go(func() {
		for {
			n.Log.follow.lag.Store(true)
			select {
			case <-time.After(30 * time.Millisecond):
			case <-stop:
				n.Log.follow.lag.Store(false)
				return
			}
			n.Log.follow.lag.Store(false)
			select {
			case <-time.After(10 * time.Millisecond):
			case <-stop:
				return
			}
		}
	})
}

func TestLinearizable(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	clients, ops := 6, 60
	if *long {
		ops = 400
	}
	_, nodes := startNodes(t, 3)
	t.Run("default reads", func(t *testing.T) {
		linSession(t, nodes, "lin")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		lagging(nodes[2], stop, &wg)
		history := linHistory(t, nodes, "lin", clients, ops, seed, func(ctx context.Context, n *node) error { return n.Sync(ctx) })
		close(stop)
		wg.Wait()
		res, info := porcupine.CheckOperationsVerbose(registers, history, time.Minute)
		if res != porcupine.Ok {
			t.Fatalf("the history of %d operations is %v with linearizable reads; a linearization of a part: %v", len(history), res, info.PartialLinearizationsOperations())
		}
		t.Logf("%d operations, linearizable", len(history))
	})
	t.Run("local reads on a lagging node", func(t *testing.T) {
		// The check must bite: local reads, and a node that lags, give
		// stale reads some of the time. One run may be lucky; a few are
		// not.
		for try := range 5 {
			session := fmt.Sprintf("stale%d", try)
			linSession(t, nodes, session)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			lagging(nodes[2], stop, &wg)
			history := linHistory(t, nodes, session, clients, ops, seed+uint64(try), func(context.Context, *node) error { return nil })
			close(stop)
			wg.Wait()
			if res := porcupine.CheckOperationsTimeout(registers, history, time.Minute); res == porcupine.Illegal {
				t.Logf("try %d: %d operations, not linearizable, as it must not be", try, len(history))
				return
			}
		}
		t.Fatal("local reads on a lagging node always looked linearizable: the check does not bite")
	})
}
