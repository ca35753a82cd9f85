package grpcapi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// ackedWrite is a write a client was answered for.
type ackedWrite struct {
	name  string
	value float64
	rev   int64
}

// writeLog is what one writer sent and what it was answered.
type writeLog struct {
	prefix string
	sent   int // values 1..sent were sent, in this order
	mu     sync.Mutex
	acked  []ackedWrite
}

func (l *writeLog) ack(a ackedWrite) {
	l.mu.Lock()
	l.acked = append(l.acked, a)
	l.mu.Unlock()
}

// TestStressWriteStreams: several write streams and unary writers write
// to one session at once, while one watcher sees everything; some streams
// are cut (their context cancelled, or their connection closed) at random
// points. Each writer writes the values 1, 2, 3, ... in order, to
// variables of its own that it creates by upsert. The watcher's record is
// the model: per writer, the values applied must be exactly 1..n (what a
// stream applied is a prefix of what it sent, in its order), n covers
// every write the writer was answered for, and each of those is seen at
// the revision its answer named.
func TestStressWriteStreams(t *testing.T) {
	seed := rand.Uint64()
	if s, err := strconv.ParseUint(os.Getenv("VARWATCH_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (VARWATCH_SEED to repeat)", seed)
	h := newHarness(t, harnessOptions{config: func(c *Config) { c.WriteWindow = 4 }})
	h.createSession("s")
	addr := h.cc.Target()

	// The watcher keeps every update, as fast as they come.
	var seenMu sync.Mutex
	var seen []*pb.VariableUpdate
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	ws, err := h.client.WatchVariablesBatched(wctx, &pb.WatchVariablesRequest{SessionId: "s", Pattern: "*"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Header(); err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan error, 1)
	go func() {
		for {
			b, err := ws.Recv()
			if err != nil {
				watchDone <- err
				return
			}
			seenMu.Lock()
			seen = append(seen, b.GetUpdates()...)
			seenMu.Unlock()
		}
	}()

	var logs []*writeLog
	var wg sync.WaitGroup
	const rounds, streamsPerRound, unaryWriters = 4, 3, 2
	for u := range unaryWriters {
		l := &writeLog{prefix: fmt.Sprintf("u%d.", u)}
		logs = append(logs, l)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(1000+u)))
			for i := 1; i <= 150; i++ {
				name := l.prefix + "v" + strconv.Itoa(r.IntN(3))
				resp, err := h.client.SetVariable(context.Background(), &pb.SetVariableRequest{SessionId: "s",
					VariableIdentifier: name, Value: floatV(float64(i)), CreateType: floatT})
				if err != nil {
					t.Errorf("unary writer %d: %v", u, err)
					return
				}
				l.sent = i
				l.ack(ackedWrite{name, float64(i), resp.GetRevision()})
			}
		}()
	}
	for round := range rounds {
		for k := range streamsPerRound {
			g := round*streamsPerRound + k
			l := &writeLog{prefix: fmt.Sprintf("w%d.", g)}
			logs = append(logs, l)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := streamWriter(addr, l, rand.New(rand.NewPCG(seed, uint64(g)))); err != nil {
					t.Errorf("stream %d: %v", g, err)
				}
			}()
		}
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	waitFor(t, "the cut streams' handlers to finish", func() bool { return h.srv.ActiveWriteStreams() == 0 })
	end, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "zz.end",
		Value: floatV(1), CreateType: floatT})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watcher to see the last write", func() bool {
		seenMu.Lock()
		defer seenMu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1].GetRevision() >= end.GetRevision()
	})
	select {
	case err := <-watchDone:
		t.Fatalf("the watch ended: %v", err)
	default:
	}

	seenMu.Lock()
	defer seenMu.Unlock()
	var cut, total int
	for _, l := range logs {
		var values []float64
		revs := map[float64]int64{}
		registered := map[string]int64{}
		for _, u := range seen {
			name := u.GetVariable().GetName()
			if !strings.HasPrefix(name, l.prefix) {
				continue
			}
			switch u.GetUpdateType() {
			case "variable_registered":
				registered[name] = u.GetRevision()
			case "value_change":
				if first, ok := registered[name]; !ok || first > u.GetRevision() {
					t.Fatalf("%s: a value of %s before its registration", l.prefix, name)
				}
				v := u.GetVariable().GetValue().GetFloatValue()
				values = append(values, v)
				revs[v] = u.GetRevision()
			}
		}
		for i, v := range values {
			if v != float64(i+1) {
				t.Fatalf("%s: applied values %v are not 1..n in order (index %d)", l.prefix, values, i)
			}
		}
		if len(values) > l.sent {
			t.Fatalf("%s: %d values applied, %d sent", l.prefix, len(values), l.sent)
		}
		for _, a := range l.acked {
			if got, ok := revs[a.value]; !ok || got != a.rev {
				t.Fatalf("%s: acknowledged %v, watcher saw it at revision %d (seen: %v)", l.prefix, a, got, ok)
			}
		}
		if len(values) < l.sent {
			cut++
		}
		total += len(values)
	}
	t.Logf("%d writes applied; %d writers applied less than they sent", total, cut)
}

// streamWriter runs one write stream on a connection of its own: random
// batches of the values 1, 2, ..., then either a clean end (every write
// must be answered) or a cut at a random point.
func streamWriter(addr string, l *writeLog, r *rand.Rand) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	stream, err := pb.NewUnifiedBridgeClient(cc).WriteVariables(ctx)
	if err != nil {
		return err
	}
	type sentBatch struct {
		names  []string
		values []float64
	}
	var mu sync.Mutex
	var batches []sentBatch
	cutAfter := -1 // batches; -1: end cleanly
	nBatches := 5 + r.IntN(40)
	if r.IntN(2) == 0 {
		cutAfter = r.IntN(nBatches)
	}
	closeConn := r.IntN(2) == 0

	recvDone := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			mu.Lock()
			b := batches[resp.GetSequence()-1]
			mu.Unlock()
			if revs := resp.GetRevisions(); len(revs) > 0 { // small acks
				if len(resp.GetResults()) > 0 || len(revs) != len(b.names) {
					recvDone <- fmt.Errorf("small acks %v for %d writes", resp, len(b.names))
					return
				}
				for i, rev := range revs {
					l.ack(ackedWrite{b.names[i], b.values[i], rev})
				}
				continue
			}
			for i, res := range resp.GetResults() {
				if !res.GetSuccess() {
					recvDone <- fmt.Errorf("write %s=%v failed: %s", b.names[i], b.values[i], res.GetError())
					return
				}
				l.ack(ackedWrite{b.names[i], b.values[i], res.GetRevision()})
			}
		}
	}()
	next := 1
	for i := range nBatches {
		if i == cutAfter {
			break
		}
		req := &pb.WriteVariablesRequest{Atomic: r.IntN(3) == 0, SmallAcks: r.IntN(2) == 0}
		if i == 0 {
			req.SessionId = "s"
		}
		var b sentBatch
		vars := []int{0, 1, 2, 3}
		r.Shuffle(len(vars), func(i, j int) { vars[i], vars[j] = vars[j], vars[i] })
		for j := range 1 + r.IntN(4) {
			v := vars[j] // distinct within an atomic batch
			if !req.Atomic {
				v = r.IntN(4)
			}
			name := l.prefix + "v" + strconv.Itoa(v)
			req.Updates = append(req.Updates, upsert(name, floatT, floatV(float64(next))))
			b.names, b.values = append(b.names, name), append(b.values, float64(next))
			next++
		}
		mu.Lock()
		batches = append(batches, b)
		mu.Unlock()
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		l.sent = next - 1
	}
	if cutAfter < 0 {
		_ = stream.CloseSend()
		if err := <-recvDone; err.Error() != "EOF" {
			return fmt.Errorf("clean end: %w", err)
		}
		if n := len(l.acked); n != l.sent {
			return fmt.Errorf("clean end with %d of %d writes answered", n, l.sent)
		}
		return nil
	}
	// Cut: sometimes at once, sometimes after some answers arrived.
	if r.IntN(2) == 0 {
		time.Sleep(time.Duration(r.IntN(500)) * time.Microsecond)
	}
	if closeConn {
		cc.Close()
	} else {
		cancel()
	}
	err = <-recvDone
	if strings.HasPrefix(err.Error(), "write ") {
		return err
	}
	return nil
}
