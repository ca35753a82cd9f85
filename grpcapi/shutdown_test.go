package grpcapi

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// serveOn runs a Server over eng on a loopback gRPC server and returns it
// with a client connection.
func serveOn(t *testing.T, eng *engine.Engine) (*Server, pb.UnifiedBridgeClient) {
	t.Helper()
	srv := New(Config{Backend: eng})
	_, cc := serveLoopback(t, srv)
	return srv, pb.NewUnifiedBridgeClient(cc)
}

// TestShutdownResumeRevisionIsExact ends watch streams with Shutdown while
// writers keep writing, then resumes each from the revision its end status
// names, on another Server over the same engine: the two halves together
// hold every write after the stream's snapshot exactly once, whole, in
// order. So the resume revision is exact, and acknowledged writes the
// stream had not received when it ended are replayed.
func TestShutdownResumeRevisionIsExact(t *testing.T) {
	eng := engine.New(engine.Config{})
	defer eng.Close()
	first, c1 := serveOn(t, eng)
	_, c2 := serveOn(t, eng)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()

	const vars = 6
	if _, _, err := eng.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	for i := range vars {
		if _, err := eng.Register(ctx, engine.RegisterRequest{Session: "s", Name: "v" + strconv.Itoa(i), Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
			t.Fatal(err)
		}
	}

	// Writers, straight to the engine: single and atomic sets, each value
	// unique. acked maps a revision to the values written at it. Together
	// they write fewer revisions than the history holds (10000 by
	// default), so every resume finds its revision however the writers and
	// the test are scheduled.
	var mu sync.Mutex
	acked := map[int64]map[string]int64{}
	count := 0
	progress := make(chan struct{}, 1)
	stop := make(chan struct{})    // writers: stop
	written := make(chan struct{}) // closed when every writer has stopped
	var writers sync.WaitGroup
	for w := range 3 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for seq := int64(1); seq <= 3000; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				val := int64(w+1)*1_000_000 + seq
				n := 1 + int(seq%3) // 1 to 3 variables, atomically
				req := engine.SetManyRequest{Session: "s", Atomic: true}
				values := map[string]int64{}
				for j := range n {
					name := "v" + strconv.Itoa((w+int(seq)+j)%vars)
					values[name] = val
					req.Sets = append(req.Sets, engine.SetRequest{Session: "s", Variable: name, Value: engine.Integer(val)})
				}
				res, err := eng.SetMany(ctx, req)
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
				mu.Lock()
				acked[res.Revision] = values
				count++
				mu.Unlock()
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}()
	}
	finished := make(chan struct{}) // every writer returned
	go func() {
		writers.Wait()
		close(finished)
	}()
	// waitWrites waits for n more writes, or for the writers to be done.
	waitWrites := func(n int) {
		t.Helper()
		mu.Lock()
		target := count + n
		mu.Unlock()
		for {
			mu.Lock()
			c := count
			mu.Unlock()
			if c >= target {
				return
			}
			select {
			case <-progress:
			case <-finished:
				return
			case <-ctx.Done():
				t.Fatalf("writers stalled at %d writes", c)
			}
		}
	}

	type half struct {
		ups []*pb.VariableUpdate
		end error
	}
	type watcher struct {
		name    string
		batched bool
		initial bool
		before  half // on the first server, until Shutdown
		after   []*pb.VariableUpdate
	}
	var ws []*watcher
	for _, batched := range []bool{false, true} {
		for _, initial := range []bool{false, true} {
			ws = append(ws, &watcher{name: fmt.Sprintf("batched=%v/initial=%v", batched, initial), batched: batched, initial: initial})
		}
	}
	open := func(c pb.UnifiedBridgeClient, w *watcher, req *pb.WatchVariablesRequest) func() ([]*pb.VariableUpdate, error) {
		t.Helper()
		if w.batched {
			stream, err := c.WatchVariablesBatched(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Header(); err != nil {
				t.Fatal(err)
			}
			return func() ([]*pb.VariableUpdate, error) { b, err := stream.Recv(); return b.GetUpdates(), err }
		}
		stream, err := c.WatchVariables(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Header(); err != nil {
			t.Fatal(err)
		}
		return func() ([]*pb.VariableUpdate, error) { u, err := stream.Recv(); return []*pb.VariableUpdate{u}, err }
	}

	waitWrites(20)
	var readers sync.WaitGroup
	for _, w := range ws {
		recv := open(c1, w, &pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: w.initial})
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				ups, err := recv()
				if err != nil {
					w.before.end = err
					return
				}
				w.before.ups = append(w.before.ups, ups...)
			}
		}()
	}
	waitWrites(100)
	first.Shutdown()
	readers.Wait()

	// Resume each on the second server from the revision it was given.
	waitWrites(50)
	for _, w := range ws {
		st := status.Convert(w.before.end)
		var resume int64 = -1
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == ReasonShuttingDown {
				resume, _ = strconv.ParseInt(info.GetMetadata()["resume_revision"], 10, 64)
			}
		}
		if st.Code() != codes.Unavailable || resume < 0 {
			t.Fatalf("%s ended with %v, want UNAVAILABLE with a resume revision", w.name, w.before.end)
		}
		if last := w.before.ups[len(w.before.ups)-1].GetRevision(); last != resume {
			t.Fatalf("%s: resume_revision %d, last revision received %d", w.name, resume, last)
		}
		recv := open(c2, w, &pb.WatchVariablesRequest{SessionId: "s", StartRevision: proto.Int64(resume),
			HeartbeatInterval: durationpb.New(MinHeartbeatInterval)})
		readers.Add(1)
		go func() {
			defer readers.Done()
			<-written // then read up to the last write
			mu.Lock()
			var final int64
			for rev := range acked {
				final = max(final, rev)
			}
			mu.Unlock()
			for {
				ups, err := recv()
				if err != nil {
					t.Errorf("%s: resumed stream: %v", w.name, err)
					return
				}
				w.after = append(w.after, ups...)
				if last := ups[len(ups)-1]; last.GetUpdateType() == "heartbeat" && last.GetRevision() >= final {
					return
				}
			}
		}()
	}
	waitWrites(50)
	close(stop)
	writers.Wait()
	close(written)
	readers.Wait()

	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			var snapshot int64 = -1
			got := map[int64]map[string]int64{}
			var last int64
			for _, up := range append(w.before.ups, w.after...) {
				rev := up.GetRevision()
				switch up.GetUpdateType() {
				case "initial_values_complete":
					snapshot = rev
				case "heartbeat":
					if snapshot < 0 {
						snapshot = rev
					}
				case "value_change":
					if rev < last {
						t.Fatalf("revision %d after %d", rev, last)
					}
					if got[rev] == nil {
						got[rev] = map[string]int64{}
					}
					name := up.GetVariable().GetName()
					if _, dup := got[rev][name]; dup {
						t.Fatalf("%s delivered twice at revision %d", name, rev)
					}
					got[rev][name] = up.GetVariable().GetValue().GetIntegerValue()
					last = rev
				}
			}
			want := 0
			for rev, values := range acked {
				if rev <= snapshot {
					continue
				}
				want++
				if !equalInts(got[rev], values) {
					t.Errorf("revision %d: wrote %v, the stream got %v", rev, values, got[rev])
				}
			}
			if len(got) != want {
				t.Errorf("the stream got %d revisions, %d were written after its snapshot %d", len(got), want, snapshot)
			}
		})
	}
}

func equalInts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
