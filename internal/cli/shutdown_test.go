package cli

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/grpcapi"
	vwclient "github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// ackedWrite is a write the server acknowledged: its revision and the
// values it set, by variable name.
type ackedWrite struct {
	rev    int64
	values map[string]int64
}

// streamLog is what one watch stream received and how it ended.
type streamLog struct {
	name    string
	batched bool
	initial bool
	updates []*pb.VariableUpdate
	end     error
}

// TestServeShutdownUnderLoad stops serve (a canceled context, as SIGTERM
// does) while watch streams of both kinds are open and writers, single
// and atomic, are in flight. Then, for every stream:
//
//   - it ended with UNAVAILABLE, reason SHUTTING_DOWN, and a resume
//     revision equal to the last revision it received;
//   - it received every acknowledged write after its snapshot and up to
//     its resume revision, whole (all the values of an atomic set), in
//     revision order, once;
//   - everything it received was an acknowledged write: nothing a writer
//     saw fail, and no part of one, was applied.
func TestServeShutdownUnderLoad(t *testing.T) {
	clearSecurityEnv(t)
	s := startServer(t, "--heartbeat-interval", "50ms", "--shutdown-timeout", "10s")
	c, err := vwclient.Dial(s.addr, vwclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()

	const vars = 8
	if _, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	for i := range vars {
		if _, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "s", Name: varName(i),
			Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: 0}}}); err != nil {
			t.Fatal(err)
		}
	}

	// Streams: per-update and batched, with and without initial values.
	var streams []*streamLog
	for _, batched := range []bool{false, true} {
		for _, initial := range []bool{false, true} {
			for k := range 2 {
				streams = append(streams, &streamLog{name: fmt.Sprintf("batched=%v/initial=%v/%d", batched, initial, k), batched: batched, initial: initial})
			}
		}
	}
	var streamsDone sync.WaitGroup
	for _, sl := range streams {
		registered := make(chan error, 1)
		streamsDone.Add(1)
		go func() {
			defer streamsDone.Done()
			sl.end = runStream(ctx, c, sl, registered)
		}()
		if err := <-registered; err != nil {
			t.Fatalf("stream %s: %v", sl.name, err)
		}
	}

	// Writers: single sets and atomic sets of three, each value unique.
	var (
		mu      sync.Mutex
		acked   = map[int64]ackedWrite{}
		failed  []error
		nAcked  atomic.Int64
		enough  = make(chan struct{})
		enough1 sync.Once
	)
	var writersDone sync.WaitGroup
	for w := range 4 {
		writersDone.Add(1)
		go func() {
			defer writersDone.Done()
			for seq := int64(1); ; seq++ {
				val := int64(w+1)*1_000_000 + seq
				values := map[string]int64{}
				var rev int64
				var err error
				if seq%3 == 0 { // atomic set of three
					req := &pb.SetVariablesRequest{SessionId: "s", Atomic: true}
					for j := range 3 {
						name := varName((w + int(seq) + j) % vars)
						values[name] = val
						req.Updates = append(req.Updates, &pb.SetVariableRequest{VariableIdentifier: name, Value: intValue(val)})
					}
					var resp *pb.SetVariablesResponse
					if resp, err = c.SetVariables(ctx, req); err == nil {
						rev = resp.GetRevision()
					}
				} else {
					name := varName((w*3 + int(seq)) % vars)
					values[name] = val
					var resp *pb.SetVariableResponse
					if resp, err = c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: name, Value: intValue(val)}); err == nil {
						rev = resp.GetRevision()
					}
				}
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
					mu.Unlock()
					return
				}
				acked[rev] = ackedWrite{rev: rev, values: values}
				mu.Unlock()
				if nAcked.Add(1) == 100 {
					enough1.Do(func() { close(enough) })
				}
			}
		}()
	}

	select {
	case <-enough:
	case <-time.After(3 * waitTimeout): // a failure deadline: -race on a loaded machine is slow
		t.Fatalf("writers acknowledged only %d writes", nAcked.Load())
	}
	s.stop(t) // serve returned 0: streams ended, calls in flight finished
	waitGroup(t, &writersDone, "writers")
	waitGroup(t, &streamsDone, "streams")

	for _, err := range failed {
		if status.Code(err) != codes.Unavailable {
			t.Errorf("a write failed with %v, want UNAVAILABLE", err)
		}
	}
	if len(failed) != 4 {
		t.Errorf("%d writers failed, want all 4 (they write until the server stops)", len(failed))
	}
	for _, sl := range streams {
		t.Run(sl.name, func(t *testing.T) { checkStream(t, sl, acked) })
	}
}

// runStream watches session s until the stream ends, recording what it
// received; registered gets nil once the server confirmed the watch.
func runStream(ctx context.Context, c *vwclient.Client, sl *streamLog, registered chan<- error) error {
	req := &pb.WatchVariablesRequest{SessionId: "s", IncludeInitialValues: sl.initial}
	var recv func() ([]*pb.VariableUpdate, error)
	var header func() error
	if sl.batched {
		stream, err := c.WatchVariablesBatched(ctx, req)
		if err != nil {
			registered <- err
			return err
		}
		header = func() error { _, err := stream.Header(); return err }
		recv = func() ([]*pb.VariableUpdate, error) {
			b, err := stream.Recv()
			return b.GetUpdates(), err
		}
	} else {
		stream, err := c.WatchVariables(ctx, req)
		if err != nil {
			registered <- err
			return err
		}
		header = func() error { _, err := stream.Header(); return err }
		recv = func() ([]*pb.VariableUpdate, error) {
			up, err := stream.Recv()
			return []*pb.VariableUpdate{up}, err
		}
	}
	err := header()
	registered <- err
	if err != nil {
		return err
	}
	for {
		ups, err := recv()
		if err != nil {
			return err
		}
		sl.updates = append(sl.updates, ups...)
	}
}

func checkStream(t *testing.T, sl *streamLog, acked map[int64]ackedWrite) {
	// How it ended.
	st := status.Convert(sl.end)
	if st.Code() != codes.Unavailable {
		t.Fatalf("stream ended with %v, want UNAVAILABLE", sl.end)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil || info.GetReason() != grpcapi.ReasonShuttingDown || info.GetDomain() != grpcapi.ErrorDomain {
		t.Fatalf("stream ended with %v, details %v: want ErrorInfo %s", sl.end, st.Details(), grpcapi.ReasonShuttingDown)
	}
	resume, err := strconv.ParseInt(info.GetMetadata()["resume_revision"], 10, 64)
	if err != nil {
		t.Fatalf("resume_revision: %v", err)
	}

	// What it received: a start (initial values or a heartbeat), then
	// changes in revision order, heartbeats between them.
	var snapshot, last int64 = -1, 0
	got := map[int64]map[string]int64{} // revision -> values received
	for i, up := range sl.updates {
		rev := up.GetRevision()
		if rev < last {
			t.Fatalf("update %d (%s) at revision %d after revision %d", i, up.GetUpdateType(), rev, last)
		}
		last = rev
		switch typ := up.GetUpdateType(); typ {
		case "initial_value":
			if !sl.initial {
				t.Fatalf("initial_value on a watch without initial values")
			}
		case "initial_values_complete":
			snapshot = rev
		case "heartbeat":
			if snapshot < 0 && !sl.initial {
				snapshot = rev // the greeting: the stream is complete from here
			}
		case "value_change":
			if snapshot < 0 {
				t.Fatalf("value_change before the stream's start")
			}
			if rev <= snapshot {
				t.Fatalf("value_change at revision %d, at or before the snapshot %d", rev, snapshot)
			}
			vals := got[rev]
			if vals == nil {
				vals = map[string]int64{}
				got[rev] = vals
			} else if prev := sl.updates[i-1]; prev.GetUpdateType() != "value_change" || prev.GetRevision() != rev {
				t.Fatalf("the changes of revision %d are not back to back", rev)
			}
			name := up.GetVariable().GetName()
			if _, dup := vals[name]; dup {
				t.Fatalf("%s delivered twice at revision %d", name, rev)
			}
			vals[name] = up.GetVariable().GetValue().GetIntegerValue()
		default:
			t.Fatalf("unexpected %s at revision %d", typ, rev)
		}
	}
	if snapshot < 0 {
		t.Fatalf("the stream never started: %v", sl.updates)
	}
	if resume != last {
		t.Fatalf("resume_revision %d, but the last revision received is %d", resume, last)
	}

	// Every acknowledged write after the snapshot, up to the resume
	// revision, arrived whole; nothing else arrived.
	for rev, w := range acked {
		if rev <= snapshot || rev > resume {
			continue
		}
		if !equalValues(got[rev], w.values) {
			t.Errorf("acknowledged write at revision %d set %v; the stream got %v", rev, w.values, got[rev])
		}
	}
	for rev, vals := range got {
		if w, ok := acked[rev]; !ok || !equalValues(vals, w.values) {
			t.Errorf("the stream got %v at revision %d, which no acknowledged write made (%v)", vals, rev, w.values)
		}
	}
	t.Logf("snapshot %d, resume %d, %d changes", snapshot, resume, len(got))
}

func equalValues(a, b map[string]int64) bool {
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

func varName(i int) string { return "v" + strconv.Itoa(i) }

func intValue(v int64) *pb.Value { return &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: v}} }

// waitGroup waits for wg, failing the test after waitTimeout.
func waitGroup(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not end", what)
	}
}
