package journal_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/internal/setrate"
	"github.com/varwatch/varwatch/journal"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// The price of durability over gRPC: 16 writers, each setting its own
// variable as fast as the server answers, in memory and with each fsync
// mode. Reports sets/s and the fsyncs per 1,000 sets (group commit makes
// that far below 1,000: one fsync per engine batch).
//
//	go test ./journal -run '^$' -bench DurableSets -benchtime 5s
func BenchmarkDurableSets(b *testing.B) {
	for _, mode := range []string{"memory", "batch", "interval", "none"} {
		b.Run(mode, func(b *testing.B) {
			var j *journal.Journal
			cfg := engine.Config{}
			var eng *engine.Engine
			if mode == "memory" {
				eng = engine.New(cfg)
			} else {
				m, _ := journal.ParseFsync(mode)
				var err error
				j, err = journal.Open(b.TempDir(), journal.Options{Fsync: m})
				if err != nil {
					b.Fatal(err)
				}
				cfg.Journal = j
				if eng, err = engine.Open(cfg); err != nil {
					b.Fatal(err)
				}
			}
			client, stop := serve(b, eng)
			defer func() {
				stop()
				_ = eng.Close()
				if j != nil {
					_ = j.Close()
				}
			}()
			ctx := context.Background()
			if _, err := client.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "bench"}); err != nil {
				b.Fatal(err)
			}
			const writers = 16
			for i := range writers {
				if _, err := client.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: "bench", Name: "v" + strconv.Itoa(i),
					Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{}}}); err != nil {
					b.Fatal(err)
				}
			}
			var fsyncs0 uint64
			var fsyncTime0 time.Duration
			if j != nil {
				fsyncs0, fsyncTime0 = j.Fsyncs(), j.FsyncTime()
			}
			var next atomic.Int64
			b.SetParallelism((writers + 1) / 2) // times GOMAXPROCS goroutines; 16 on 2 cores
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb_ *testing.PB) {
				name := "v" + strconv.Itoa(int(next.Add(1)-1)%writers)
				var n int64
				for pb_.Next() {
					n++
					if _, err := client.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "bench", VariableIdentifier: name,
						Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: n}}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sets/s")
			if j != nil {
				n := j.Fsyncs() - fsyncs0
				b.ReportMetric(float64(n)*1000/float64(b.N), "fsyncs/1000sets")
				if n > 0 {
					b.ReportMetric(float64((j.FsyncTime()-fsyncTime0).Microseconds())/float64(n), "µs/fsync")
				}
			}
		})
	}
}

// The same price measured the way a noisy machine allows: an in-memory
// and a --fsync=batch server run side by side, and 16 writers take turns
// on them, a second each, for -rounds rounds (internal/setrate). Load
// that comes and goes hits both alike, so the ratio of what they did
// holds where absolute figures swing by half. Reports the ratio of the
// totals and the median, worst and best of the rounds' ratios (their
// spread says how noisy the run was). The writers share the servers'
// process here; cmd/varwatch's BenchmarkDurableVsMemoryServers runs the
// servers as processes of their own.
//
//	go test ./journal -run '^$' -bench DurableVsMemory -benchtime 1x -rounds 10
func BenchmarkDurableVsMemory(b *testing.B) {
	mem := engine.New(engine.Config{})
	j, err := journal.Open(b.TempDir(), journal.Options{Fsync: journal.FsyncPerBatch})
	if err != nil {
		b.Fatal(err)
	}
	dur, err := engine.Open(engine.Config{Journal: j})
	if err != nil {
		b.Fatal(err)
	}
	memClient, stopMem := serve(b, mem)
	durClient, stopDur := serve(b, dur)
	defer func() {
		stopMem()
		stopDur()
		_ = mem.Close()
		_ = dur.Close()
		_ = j.Close()
	}()
	const writers = 16
	for _, c := range []pb.UnifiedBridgeClient{memClient, durClient} {
		if err := setrate.Prepare(context.Background(), c, writers); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		fsyncs0, fsyncTime0 := j.Fsyncs(), j.FsyncTime()
		r, err := setrate.Compare(memClient, durClient, writers, *rounds, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		r.Report(b, "memory", "batch", time.Second)
		_, durSets := r.Totals()
		fsyncs := j.Fsyncs() - fsyncs0
		b.ReportMetric(float64(fsyncs)*1000/float64(durSets), "fsyncs/1000sets")
		b.ReportMetric(float64((j.FsyncTime()-fsyncTime0).Microseconds())/float64(fsyncs), "µs/fsync")
	}
}

var rounds = flag.Int("rounds", 10, "rounds of BenchmarkDurableVsMemory, a second on each server")

// serve runs a gRPC server for eng on loopback.
func serve(b *testing.B, eng *engine.Engine) (pb.UnifiedBridgeClient, func()) {
	api := grpcapi.New(grpcapi.Config{Backend: eng})
	gs := grpc.NewServer()
	grpcapi.Register(gs, api)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	return pb.NewUnifiedBridgeClient(conn), func() {
		_ = conn.Close()
		api.Shutdown()
		gs.Stop()
	}
}

// How long a start takes with 1M records in the log and no snapshot to
// start from: the directory is copied while the engine runs (what a kill
// -9 leaves), then opened. Reports the seconds of engine.Open (lock, open
// the log, replay, start snapshot).
//
//	go test ./journal -run '^$' -bench Restart1M -benchtime 1x
func BenchmarkRestart1M(b *testing.B) {
	const records = 1_000_000
	dir := b.TempDir()
	live := filepath.Join(dir, "live")
	j, err := journal.Open(live, journal.Options{Fsync: journal.FsyncNone, SnapshotRecords: 2 * records, SnapshotBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := engine.Open(engine.Config{Journal: j})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := eng.CreateSession(ctx, engine.CreateSessionRequest{ID: "s"}); err != nil {
		b.Fatal(err)
	}
	const vars = 1000
	for i := range vars {
		if _, err := eng.Register(ctx, engine.RegisterRequest{Session: "s", Name: fmt.Sprintf("v%d", i), Type: engine.TypeInteger, Value: engine.Integer(0)}); err != nil {
			b.Fatal(err)
		}
	}
	// Concurrent writers, so the loop batches as it would under load.
	const writers = 16
	done := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := w; i < records-vars-1; i += writers {
				if _, err := eng.Set(ctx, engine.SetRequest{Session: "s", Variable: fmt.Sprintf("v%d", i%vars), Value: engine.Integer(int64(i))}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range writers {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	crash := filepath.Join(dir, "crash")
	if out, err := exec.Command("cp", "-r", live, crash).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v %s", err, out)
	}
	_ = os.Remove(filepath.Join(crash, "LOCK"))
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		j2, err := journal.Open(crash, journal.Options{})
		if err != nil {
			b.Fatal(err)
		}
		eng2, err := engine.Open(engine.Config{Journal: j2})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/restart")
		b.StopTimer()
		v, err := eng2.Get(ctx, "s", "v0")
		if err != nil || v.Version < records/vars-2 {
			b.Fatalf("after restart v0 is %+v, %v", v, err)
		}
		_ = eng2.Close()
		_ = j2.Close()
	}
	_ = eng.Close()
	_ = j.Close()
}
