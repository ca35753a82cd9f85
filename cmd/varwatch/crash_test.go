package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// The durability guarantee, tested on the real binary: `varwatch serve
// --data-dir` is killed with SIGKILL at random moments while writers
// (single sets and atomic three-variable sets) and whole-session watchers
// run, and restarted. A model built only from acknowledgements must hold
// after every restart: no acknowledged write lost, no atomic set partly
// applied, revisions continuing, the incarnation unchanged; and every
// watcher, resuming from its last complete revision with the incarnation,
// must end up with exactly the session's history: every revision once, in
// order, each the write the model says.
//
// CI runs a few rounds; go test ./cmd/varwatch -run Crash -crash.rounds=100
// runs the long one. Reproduce with -crash.seed.
var (
	crashRounds = flag.Int("crash.rounds", 3, "kill -9 rounds of TestCrashRecovery")
	crashSeed   = flag.Uint64("crash.seed", 0, "seed of TestCrashRecovery (0: random)")
)

const (
	crashSession  = "crash"
	singleWriters = 2
	atomicWriters = 2
	atomicGroup   = 3 // variables an atomic writer sets at one revision
	crashWatchers = 2
)

func rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// writerModel is what one writer knows: the writes acknowledged (and the
// revision of each), and the one in flight when the server died, whose
// fate only the restarted server can tell.
type writerModel struct {
	vars    []string
	atomic  bool
	next    int64           // value of the next write
	acked   map[int64]int64 // revision -> value, acknowledged or found applied
	last    int64           // value of the newest write known applied
	lastRev int64
	pending int64 // value in flight at the kill; 0: none
}

func (w *writerModel) write(ctx context.Context, c pb.UnifiedBridgeClient) error {
	n := w.next
	w.next++
	var rev int64
	var err error
	if !w.atomic {
		var res *pb.SetVariableResponse
		res, err = c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: crashSession, VariableIdentifier: w.vars[0],
			Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: n}}})
		rev = res.GetRevision()
	} else {
		req := &pb.SetVariablesRequest{SessionId: crashSession, Atomic: true}
		for _, v := range w.vars {
			req.Updates = append(req.Updates, &pb.SetVariableRequest{VariableIdentifier: v,
				Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: n}}})
		}
		var res *pb.SetVariablesResponse
		res, err = c.SetVariables(ctx, req)
		rev = res.GetRevision()
	}
	if err != nil {
		w.pending = n
		return err
	}
	w.acked[rev], w.last, w.lastRev = n, n, rev
	return nil
}

// check compares the restarted server with the model and settles the
// write in flight.
func (w *writerModel) check(t *testing.T, c pb.UnifiedBridgeClient) {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	res, err := c.GetVariables(ctx, &pb.GetVariablesRequest{SessionId: crashSession, VariableIdentifiers: w.vars})
	if err != nil {
		t.Fatalf("reading %v after restart: %v", w.vars, err)
	}
	v0 := res.Variables[0]
	val, rev := v0.GetValue().GetIntegerValue(), v0.GetModRevision()
	for _, v := range res.Variables[1:] {
		if v.GetValue().GetIntegerValue() != val || v.GetModRevision() != rev {
			t.Fatalf("partial atomic set: %s=%d@%d but %s=%d@%d", v0.Name, val, rev, v.Name, v.GetValue().GetIntegerValue(), v.GetModRevision())
		}
	}
	switch {
	case w.pending != 0 && val == w.pending:
		w.acked[rev], w.last, w.lastRev = val, val, rev
	case val != w.last || (w.last != 0 && rev != w.lastRev):
		t.Fatalf("%s is %d@%d after restart; the last acknowledged write was %d@%d (in flight: %d): an acknowledged write was lost",
			v0.Name, val, rev, w.last, w.lastRev, w.pending)
	}
	w.pending = 0
}

// watcher follows the whole session across restarts.
type watcher struct {
	complete int64 // every change up to it has been received
	events   []seen
	progress atomic.Int64 // complete, for other goroutines
}

func (w *watcher) completeLoad() int64 { return w.progress.Load() }

type seen struct {
	rev  int64
	name string
	val  int64
}

// follow streams from w.complete until the stream fails or ctx ends, then
// drops the events of revisions it may have received only in part.
func (w *watcher) follow(ctx context.Context, c pb.UnifiedBridgeClient, incarnation string) error {
	defer func() {
		w.progress.Store(w.complete)
		for len(w.events) > 0 && w.events[len(w.events)-1].rev > w.complete {
			w.events = w.events[:len(w.events)-1]
		}
	}()
	stream, err := c.WatchVariables(ctx, &pb.WatchVariablesRequest{SessionId: crashSession,
		StartRevision: &w.complete, Incarnation: incarnation, HeartbeatInterval: durationpb.New(50 * time.Millisecond)})
	if err != nil {
		return err
	}
	for {
		up, err := stream.Recv()
		if err != nil {
			return err
		}
		if inc := up.GetIncarnation(); inc != "" && inc != incarnation {
			return fmt.Errorf("update of incarnation %q, want %q", inc, incarnation)
		}
		switch up.GetUpdateType() {
		case "value_change":
			if n := len(w.events); n > 0 && up.Revision > w.events[n-1].rev {
				w.complete = max(w.complete, w.events[n-1].rev)
				w.progress.Store(w.complete)
			}
			if up.Revision <= w.complete {
				return fmt.Errorf("revision %d delivered again (complete up to %d)", up.Revision, w.complete)
			}
			w.events = append(w.events, seen{up.Revision, up.GetVariable().GetName(), up.GetVariable().GetValue().GetIntegerValue()})
		case "heartbeat":
			w.complete = max(w.complete, up.Revision)
			w.progress.Store(w.complete)
		}
	}
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	seed := *crashSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (-crash.seed to repeat), %d rounds", seed, *crashRounds)
	r := rand.New(rand.NewPCG(seed, 1))
	tmp := t.TempDir()
	bin := buildBinary(t, tmp)
	dataDir := filepath.Join(tmp, "data")
	// Small snapshot thresholds, so that rounds cross snapshots and log
	// truncations too.
	serverArgs := []string{"--data-dir", dataDir, "--history-revisions", "100000", "--history-bytes", "268435456",
		"--snapshot-records", "2000"}

	srv := startServer(t, bin, serverArgs...)
	c, closeConn := dial(t, srv.addr)
	ctx, cancel := rpcCtx()
	sres, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: crashSession, Ttl: durationpb.New(time.Hour)})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	incarnation := sres.Session.Incarnation
	var writers []*writerModel
	for i := range singleWriters + atomicWriters {
		w := &writerModel{atomic: i >= singleWriters, next: 1, acked: map[int64]int64{}}
		size := 1
		if w.atomic {
			size = atomicGroup
		}
		for k := range size {
			name := fmt.Sprintf("w%dv%d", i, k)
			w.vars = append(w.vars, name)
			ctx, cancel := rpcCtx()
			_, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: crashSession, Name: name,
				Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: 0}}})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		writers = append(writers, w)
	}
	ctx, cancel = rpcCtx()
	info, err := c.GetSession(ctx, &pb.GetSessionRequest{SessionId: crashSession})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	base := info.Session.Revision // every revision after it is one writer's write
	watchers := make([]*watcher, crashWatchers)
	for i := range watchers {
		watchers[i] = &watcher{complete: base}
	}
	lastRev := base
	var acknowledged, inFlightApplied, inFlightLost int

	for round := 0; round <= *crashRounds; round++ {
		final := round == *crashRounds
		runCtx, stopRun := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, w := range watchers {
			wg.Add(1)
			go func() { defer wg.Done(); _ = w.follow(runCtx, c, incarnation) }()
		}
		writeCtx, stopWrites := context.WithCancel(runCtx)
		var wwg sync.WaitGroup
		acks := make([]int, len(writers))
		for i, w := range writers {
			wwg.Add(1)
			go func() {
				defer wwg.Done()
				for writeCtx.Err() == nil {
					ctx, cancel := rpcCtx()
					before := len(w.acked)
					err := w.write(ctx, c)
					cancel()
					if err != nil {
						return
					}
					acks[i] += len(w.acked) - before
				}
			}()
		}
		time.Sleep(time.Duration(20+r.IntN(300)) * time.Millisecond) // the random moment
		if !final {
			_ = srv.cmd.Process.Signal(syscall.SIGKILL)
			<-srv.done
			wwg.Wait()
			wg.Wait()
		} else {
			stopWrites() // a write cancelled in flight is settled by check below
			wwg.Wait()
		}
		stopWrites()
		for _, n := range acks {
			acknowledged += n
		}

		if !final {
			closeConn()
			srv = startServer(t, bin, serverArgs...)
			c, closeConn = dial(t, srv.addr)
		}
		ctx, cancel := rpcCtx()
		info, err := c.GetSession(ctx, &pb.GetSessionRequest{SessionId: crashSession})
		cancel()
		if err != nil {
			t.Fatalf("round %d: session after restart: %v\n%s", round, err, srv.log)
		}
		if info.Session.Incarnation != incarnation {
			t.Fatalf("round %d: incarnation %q after restart, was %q", round, info.Session.Incarnation, incarnation)
		}
		for _, w := range writers {
			pending := w.pending
			w.check(t, c)
			switch {
			case pending != 0 && w.last == pending:
				inFlightApplied++
			case pending != 0:
				inFlightLost++
			}
			lastRev = max(lastRev, w.lastRev)
		}
		if info.Session.Revision < lastRev {
			t.Fatalf("round %d: session revision %d after restart, but revision %d was acknowledged", round, info.Session.Revision, lastRev)
		}
		if info.Session.Revision != lastRev {
			t.Fatalf("round %d: session at revision %d, but the model knows writes up to %d only", round, info.Session.Revision, lastRev)
		}
		if final {
			// Let the watchers catch up with the last revision, then stop.
			deadline := time.Now().Add(30 * time.Second)
			for _, w := range watchers {
				for w.completeLoad() < lastRev && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
			}
			stopRun()
			wg.Wait()
		}
		stopRun()
	}
	srv.stop(t, syscall.SIGTERM)
	closeConn()

	// A clean shutdown snapshots: the last start has nothing to replay and
	// the same state.
	srv = startServer(t, bin, serverArgs...)
	c, closeConn = dial(t, srv.addr)
	for _, w := range writers {
		w.check(t, c)
	}
	srv.stop(t, syscall.SIGTERM)
	closeConn()

	// Every revision after base is one acknowledged (or found applied)
	// write, and every watcher received exactly those, in order.
	want := map[int64]map[string]int64{}
	for _, w := range writers {
		for rev, val := range w.acked {
			if want[rev] != nil {
				t.Fatalf("revision %d claimed by two writes", rev)
			}
			want[rev] = map[string]int64{}
			for _, v := range w.vars {
				want[rev][v] = val
			}
		}
	}
	if int64(len(want)) != lastRev-base {
		t.Fatalf("model holds %d writes for revisions %d..%d", len(want), base+1, lastRev)
	}
	for i, w := range watchers {
		got := map[int64]map[string]int64{}
		prev := base
		for _, ev := range w.events {
			if ev.rev != prev && ev.rev != prev+1 {
				t.Fatalf("watcher %d: revision %d after %d: a gap", i, ev.rev, prev)
			}
			prev = ev.rev
			if got[ev.rev] == nil {
				got[ev.rev] = map[string]int64{}
			}
			if _, dup := got[ev.rev][ev.name]; dup {
				t.Fatalf("watcher %d: %s at revision %d twice", i, ev.name, ev.rev)
			}
			got[ev.rev][ev.name] = ev.val
		}
		if prev != lastRev {
			t.Fatalf("watcher %d ended at revision %d, want %d", i, prev, lastRev)
		}
		for rev, vals := range want {
			if fmt.Sprint(got[rev]) != fmt.Sprint(vals) {
				t.Fatalf("watcher %d: revision %d is %v, the model says %v", i, rev, got[rev], vals)
			}
		}
	}
	t.Logf("%d rounds: %d writes acknowledged, revisions %d..%d; in flight at a kill: %d applied, %d not; %d watchers saw every revision once",
		*crashRounds, acknowledged, base+1, lastRev, inFlightApplied, inFlightLost, len(watchers))
}
