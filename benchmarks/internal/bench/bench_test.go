package bench

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	MaybeChild() // the memory scenario re-executes this binary as its server
	os.Exit(m.Run())
}

// TestSmoke runs every scenario but cluster (TestSmokeCluster), peers
// included, in a tiny mode: each row must pass its verification.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts embedded NATS and etcd")
	}
	rep, table := runTiny(t, Options{Scenarios: withoutCluster(), Peers: PeerNames})
	seen := map[string]bool{}
	for _, r := range rep.Rows {
		seen[r.Scenario+"/"+r.System] = true
		seen[r.Scenario+"/"+r.API] = true
		if strings.HasSuffix(r.Variant, ", pipelined writer") {
			seen[r.Scenario+"/pipelined/"+r.System] = true
		}
		if r.Scenario == "fanout" && r.streams > 0 && r.Status == "ok" && (r.MemPerStream == 0 || r.WriterVsIdle == 0) {
			t.Errorf("fanout %s %s %s: memory per stream %v, writer vs idle %v: both must be measured", r.Variant, r.API, r.System, r.MemPerStream, r.WriterVsIdle)
		}
		if r.Status != "ok" {
			t.Errorf("%s %s %s: %s %s", r.Scenario, r.Variant, r.System, r.Status, r.Error)
		}
	}
	for _, s := range withoutCluster() {
		sys := "varwatch"
		if s == "grpc-raw" {
			sys = "grpc-go"
		}
		if !seen[s+"/"+sys] {
			t.Errorf("no %s row for %s", sys, s)
		}
	}
	for _, s := range []string{"delivery", "fanout", "latency"} {
		for _, p := range PeerNames {
			if !seen[s+"/"+p] {
				t.Errorf("no %s row for %s", p, s)
			}
		}
	}
	for _, s := range []string{"fanout", "latency"} {
		for _, api := range watchAPIs {
			if !seen[s+"/"+api.name] {
				t.Errorf("no varwatch %s row for %s", api.name, s)
			}
		}
	}
	if !seen["latency/pipelined/varwatch"] {
		t.Error("no varwatch latency row with a pipelined writer")
	}
	if !strings.Contains(table, "vs nats") {
		t.Errorf("table has no ratio column:\n%s", table)
	}
}

// TestCheckerCatches: the verification rejects what a fast wrong answer
// would look like.
func TestCheckerCatches(t *testing.T) {
	tests := []struct {
		name     string
		coalesce bool
		evs      []event
		wantErr  string
	}{
		{name: "in order", evs: []event{{0, 1, 1, 0}, {1, 1, 2, 0}, {0, 2, 3, 0}}},
		{name: "lost write", evs: []event{{0, 1, 1, 0}, {0, 3, 3, 0}}, wantErr: "lost 1 writes"},
		{name: "duplicate", evs: []event{{0, 1, 1, 0}, {0, 1, 1, 0}}, wantErr: "revision 1 after 1"},
		{name: "revision goes down across keys", evs: []event{{0, 1, 5, 0}, {1, 1, 4, 0}}, wantErr: "on the stream"},
		{name: "wrong value", evs: []event{{0, 7, 1, 0}}, wantErr: "want 1"},
		{name: "count without coalescing", evs: []event{{0, 2, 1, 2}}, wantErr: "does not coalesce"},
		{name: "coalesced counts add up", coalesce: true, evs: []event{{0, 3, 3, 3}, {0, 4, 4, 0}}},
		{name: "coalesced count too small", coalesce: true, evs: []event{{0, 3, 3, 2}}, wantErr: "merged counts"},
		{name: "unknown key", evs: []event{{9, 1, 1, 0}}, wantErr: "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newChecker(counterScheme(2), tc.coalesce, true)
			c.add(tc.evs)
			err := c.failed()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected failure: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestWaitAllNeedsEverything: a stream missing the last write times out.
func TestWaitAllNeedsEverything(t *testing.T) {
	c := newChecker(counterScheme(1), false, true)
	c.add([]event{{0, 1, 1, 0}})
	s := counterScheme(1)
	if _, err := waitAll([]*checker{c}, s.target([]int64{1}), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := waitAll([]*checker{c}, s.target([]int64{2}), 10*time.Millisecond); err == nil {
		t.Fatal("waitAll accepted a stream that missed a write")
	}
}

func TestSchemeFinal(t *testing.T) {
	g := globalScheme(10)
	if got := g.final(3, 53); got != 53 {
		t.Errorf("global final(3, 53) = %d", got)
	}
	d := scheme{init: []int64{-3}, step: 4}
	for n, want := range map[int64]int64{1: 1, 4: 1, 5: 5, 8: 5, 9: 9} {
		if got := d.final(0, n); got != want {
			t.Errorf("deadband final after %d writes = %d, want %d", n, got, want)
		}
	}
}

func TestHist(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 500 * time.Microsecond, 0.99: 990 * time.Microsecond, 1: time.Millisecond} {
		got := h.quantile(q)
		if d := float64(got-want) / float64(want); d < -0.02 || d > 0.02 {
			t.Errorf("quantile(%v) = %v, want %v within 2%%", q, got, want)
		}
	}
	for _, v := range []int64{0, 1, 127, 128, 129, 1 << 20, 1<<40 + 12345} {
		if i := histIndex(v); histUpper(i) < v || (i > 0 && histUpper(i-1) >= v) {
			t.Errorf("value %d in bucket %d [.., %d], previous ends %d", v, i, histUpper(i), histUpper(i-1))
		}
	}
}

func withoutCluster() []string {
	return slices.DeleteFunc(slices.Clone(Scenarios), func(s string) bool { return s == "cluster" })
}

// TestSmokeCluster runs the cluster scenario in the tiny mode: its 5
// measurements on one node and on 3 nodes over a 3-server JetStream
// cluster must pass their verification, every 3-node row must carry its
// ratio to the one-node row, and once it is over no goroutine of the
// nodes, their gRPC servers or the JetStream servers may be left.
func TestSmokeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded JetStream cluster")
	}
	before := runtime.NumGoroutine()
	rep, table := runTiny(t, Options{Scenarios: []string{"cluster"}})
	var one, three int
	for _, r := range rep.Rows {
		if r.Status != "ok" {
			t.Errorf("%s %s: %s %s", r.Scenario, r.Variant, r.Status, r.Error)
			continue
		}
		switch {
		case strings.HasSuffix(r.Variant, ", 1 node"):
			one++
		case strings.HasSuffix(r.Variant, ", 3 nodes"):
			three++
			if r.Ratios["1 node"] <= 0 {
				t.Errorf("%s: no ratio to the one-node row", r.Variant)
			}
		default:
			t.Errorf("row %q is neither one node nor 3", r.Variant)
		}
	}
	if one != 5 || three != 5 {
		t.Errorf("%d one-node and %d 3-node rows passed, want 5 of each", one, three)
	}
	if !strings.Contains(table, "vs 1 node") {
		t.Errorf("table has no vs 1 node column:\n%s", table)
	}
	// Connections and servers wind down after close returns: give them
	// a few seconds.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left after the scenario (%d before):\n%s", n-before, before, buf[:runtime.Stack(buf, true)])
	}
}

// runTiny runs o at the tiny size and returns its report and table,
// which it logs; a failed run fails the test with the run's log.
func runTiny(t *testing.T, o Options) (*Report, string) {
	t.Helper()
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o.Size, o.Log = "tiny", &log
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	return rep, table.String()
}
