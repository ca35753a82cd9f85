// Command varwatch-soak holds many watch streams open for a long time
// while writers keep writing, samples memory as it goes, and checks that
// every stream received every change exactly once, in order. It is not
// part of the test suite (it runs for minutes): run it by hand before a
// release, or after touching the stream path.
//
//	cd benchmarks && go run ./cmd/varwatch-soak --streams 10000 --duration 10m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

const usage = `varwatch-soak: N watch streams and W writers for a duration, bounded,
reporting memory over time and verifying that no update was missed.

Usage:
  cd benchmarks && go run ./cmd/varwatch-soak [flags]

The server runs in this process on loopback (or --server ADDR). Streams
are spread over --sessions sessions (a session allows at most 1000 watch
streams by default), each watching every variable of its session; writers
set random variables at --rate writes/s in total, open loop. Every
stream must see each of its session's revisions exactly once, in order
(a gap, a repeat or a reordering fails the run at once), and at the end
every stream must reach its session's final revision.

Memory is sampled every --sample: Go heap in use, RSS, goroutines. The run
fails if the mean RSS of the last third of the samples exceeds that of the
middle third by more than --max-growth (memory must be flat once warm).

Exit status: 0 when verified and flat, 1 otherwise.

Flags:
`

type config struct {
	server    string
	streams   int
	sessions  int
	vars      int
	writers   int
	rate      float64
	duration  time.Duration
	sample    time.Duration
	conns     int
	batched   bool
	maxGrowth float64
	history   int
}

func main() {
	var cfg config
	fs := flag.NewFlagSet("varwatch-soak", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	fs.StringVar(&cfg.server, "server", "", "`address` of a running server (default: one in this process)")
	fs.IntVar(&cfg.streams, "streams", 10000, "watch streams to hold open")
	fs.IntVar(&cfg.sessions, "sessions", 20, "sessions the streams and writes are spread over")
	fs.IntVar(&cfg.vars, "vars", 50, "variables per session")
	fs.IntVar(&cfg.writers, "writers", 4, "writer goroutines")
	fs.Float64Var(&cfg.rate, "rate", 200, "writes per second offered, all writers together")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Minute, "how long writers write")
	fs.DurationVar(&cfg.sample, "sample", 30*time.Second, "memory sampling interval")
	fs.IntVar(&cfg.conns, "conns", 16, "client connections the streams share")
	fs.BoolVar(&cfg.batched, "batched", false, "use WatchVariablesBatched")
	fs.Float64Var(&cfg.maxGrowth, "max-growth", 0.2, "allowed RSS growth, last third over middle third of the samples")
	fs.IntVar(&cfg.history, "history-revisions", 1000, "history kept per session by the in-process server (small, so it is full, and memory warm, early)")
	_ = fs.Parse(os.Args[1:])
	if cfg.streams <= 0 || cfg.sessions <= 0 || cfg.vars <= 0 || cfg.writers <= 0 || cfg.rate <= 0 || cfg.conns <= 0 {
		fmt.Fprintln(os.Stderr, "varwatch-soak: --streams, --sessions, --vars, --writers, --rate and --conns must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "varwatch-soak: FAILED:", err)
		os.Exit(1)
	}
	fmt.Println("varwatch-soak: PASSED")
}

// startServer runs a varwatch server on loopback with room for the
// streams, and returns its address and a stop function.
func startServer(cfg config) (string, func(), error) {
	eng := engine.New(engine.Config{HistoryRevisions: cfg.history})
	perSession := (cfg.streams + cfg.sessions - 1) / cfg.sessions
	api := grpcapi.New(grpcapi.Config{Backend: eng,
		MaxWatchStreams: cfg.streams + 1, MaxWatchStreamsPerSession: perSession + 1})
	gs := grpc.NewServer()
	grpcapi.Register(gs, api)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() { _ = gs.Serve(lis) }()
	return lis.Addr().String(), func() { api.Shutdown(); gs.Stop(); eng.Close() }, nil
}

func run(ctx context.Context, cfg config) error {
	addr := cfg.server
	if addr == "" {
		a, stopServer, err := startServer(cfg)
		if err != nil {
			return err
		}
		defer stopServer()
		addr = a
	}
	clients := make([]*client.Client, cfg.conns)
	for i := range clients {
		c, err := client.New(addr)
		if err != nil {
			return err
		}
		defer c.Close()
		clients[i] = c
	}
	bridge := clients[0].UnifiedBridgeClient

	sessions := make([]string, cfg.sessions)
	for i := range sessions {
		resp, err := bridge.InitializeSession(ctx, &pb.InitializeSessionRequest{})
		if err != nil {
			return fmt.Errorf("create session: %w", err)
		}
		sessions[i] = resp.GetSession().GetId()
		for v := range cfg.vars {
			_, err := bridge.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: sessions[i],
				Name: fmt.Sprintf("v%d", v), Type: pb.VariableType_VARIABLE_TYPE_INTEGER,
				InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{}}})
			if err != nil {
				return fmt.Errorf("register: %w", err)
			}
		}
	}

	// Streams: each checks its own order and counts what it received.
	wctx, cancelWatches := context.WithCancel(ctx)
	defer cancelWatches()
	streams := make([]*stream, cfg.streams)
	failed := make(chan error, 1)
	var started sync.WaitGroup
	var wg sync.WaitGroup
	for i := range streams {
		s := &stream{session: i % cfg.sessions}
		streams[i] = s
		w := clients[i%cfg.conns].Watch(wctx, &pb.WatchVariablesRequest{SessionId: sessions[s.session], Pattern: "*"},
			client.WatchOptions{Batched: cfg.batched, Heartbeats: true})
		started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.follow(w, started.Done); err != nil && wctx.Err() == nil {
				select {
				case failed <- fmt.Errorf("stream %d: %w", i, err):
				default:
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancelWatches()
	if err := waitGroup(ctx, &started, failed); err != nil {
		return fmt.Errorf("starting streams: %w", err)
	}
	fmt.Printf("%d streams open over %d sessions; writing %.0f/s for %s\n", cfg.streams, cfg.sessions, cfg.rate, cfg.duration)

	// Writers, open loop, until the duration is up.
	var acked atomic.Int64
	writeCtx, stopWriting := context.WithTimeout(ctx, cfg.duration)
	defer stopWriting()
	var writers sync.WaitGroup
	werr := make(chan error, cfg.writers)
	for w := range cfg.writers {
		writers.Add(1)
		go func() {
			defer writers.Done()
			werr <- write(writeCtx, bridge, sessions, cfg, w, &acked)
		}()
	}

	samples := sampleMemory(writeCtx, cfg.sample, streams, &acked, failed)
	writers.Wait()
	close(werr)
	for err := range werr {
		if err != nil {
			return err
		}
	}
	select {
	case err := <-failed:
		return err
	default:
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// Every stream must reach its session's final revision.
	final := make([]int64, len(sessions))
	for i, id := range sessions {
		resp, err := bridge.GetSession(ctx, &pb.GetSessionRequest{SessionId: id})
		if err != nil {
			return err
		}
		final[i] = resp.GetSession().GetRevision()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		behind := 0
		for _, s := range streams {
			if s.last.Load() < final[s.session] {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d streams did not reach their session's final revision within 2m", behind)
		}
		select {
		case err := <-failed:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	var received, resumes int64
	for _, s := range streams {
		received += s.received.Load()
		resumes += s.resumes.Load()
	}
	var expected int64
	for _, s := range streams {
		expected += final[s.session] - s.start
	}
	fmt.Printf("writes acked %d; updates received %d, expected %d, missed %d; resumes %d\n",
		acked.Load(), received, expected, expected-received, resumes)
	if received != expected {
		return fmt.Errorf("received %d updates, expected %d", received, expected)
	}
	return checkFlat(samples, cfg.maxGrowth)
}

// stream is one watch's verified position. last and received are read by
// the sampler and the final check while the follower writes them.
type stream struct {
	session  int
	start    int64 // the revision the stream started at (its greeting)
	last     atomic.Int64
	received atomic.Int64
	resumes  atomic.Int64
}

// follow reads w until it fails, checking that value changes come at
// consecutive revisions after the greeting: every write of the session
// is one revision, and the stream watches every variable of it.
func (s *stream) follow(w *client.Watch, started func()) error {
	defer w.Close()
	first := true
	for {
		up, err := w.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("session closed")
			}
			return err
		}
		s.resumes.Store(int64(w.Resumes()))
		last := s.last.Load()
		switch up.GetUpdateType() {
		case "heartbeat":
			if first {
				first = false
				s.start = up.GetRevision()
				s.last.Store(s.start)
				started()
			} else if up.GetRevision() > last {
				return fmt.Errorf("heartbeat at %d claims more than the last change received, %d", up.GetRevision(), last)
			}
		case "value_change":
			if first {
				return fmt.Errorf("value change at %d before the greeting", up.GetRevision())
			}
			if up.GetRevision() != last+1 {
				return fmt.Errorf("value change at revision %d after %d", up.GetRevision(), last)
			}
			s.last.Store(up.GetRevision())
			s.received.Add(1)
		default:
			return fmt.Errorf("unexpected %s at %d", up.GetUpdateType(), up.GetRevision())
		}
	}
}

// write sets random variables at its share of the rate until ctx ends.
func write(ctx context.Context, bridge pb.UnifiedBridgeClient, sessions []string, cfg config, w int, acked *atomic.Int64) error {
	every := time.Duration(float64(time.Second) * float64(cfg.writers) / cfg.rate)
	next := time.Now()
	for n := int64(w); ; n += int64(cfg.writers) {
		next = next.Add(every)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(next)):
		}
		sess := sessions[int(n)%len(sessions)]
		_, err := bridge.SetVariable(ctx, &pb.SetVariableRequest{SessionId: sess,
			VariableIdentifier: fmt.Sprintf("v%d", int(n/int64(len(sessions)))%cfg.vars),
			Value:              &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: n}}})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("set: %w", err)
		}
		acked.Add(1)
	}
}

type sample struct {
	at         time.Duration
	heap, rss  uint64
	goroutines int
	received   int64
	acked      int64
}

// sampleMemory prints a row every interval until ctx ends or a stream
// fails, and returns the samples.
func sampleMemory(ctx context.Context, every time.Duration, streams []*stream, acked *atomic.Int64, failed chan error) []sample {
	start := time.Now()
	var out []sample
	fmt.Printf("%8s %10s %10s %10s %12s %12s\n", "elapsed", "heap MiB", "RSS MiB", "goroutines", "writes", "received")
	take := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		var received int64
		for _, s := range streams {
			received += s.received.Load()
		}
		sm := sample{at: time.Since(start).Round(time.Second), heap: ms.HeapInuse, rss: rss(),
			goroutines: runtime.NumGoroutine(), received: received, acked: acked.Load()}
		out = append(out, sm)
		fmt.Printf("%8s %10.1f %10.1f %10d %12d %12d\n", sm.at, mib(sm.heap), mib(sm.rss), sm.goroutines, sm.acked, sm.received)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	take()
	for {
		select {
		case <-t.C:
			take()
		case err := <-failed:
			failed <- err // for the caller to report
			return out
		case <-ctx.Done():
			take()
			return out
		}
	}
}

// checkFlat compares the mean RSS of the last third of the samples with
// that of the middle third (the first third is warm-up).
func checkFlat(samples []sample, maxGrowth float64) error {
	if len(samples) < 6 {
		fmt.Printf("memory: %d samples, too few to judge flatness (need 6: lengthen --duration or shorten --sample)\n", len(samples))
		return nil
	}
	third := len(samples) / 3
	mean := func(ss []sample) float64 {
		sum := 0.0
		for _, s := range ss {
			sum += float64(s.rss)
		}
		return sum / float64(len(ss))
	}
	mid, last := mean(samples[third:2*third]), mean(samples[2*third:])
	growth := last/mid - 1
	fmt.Printf("memory: RSS mean %.1f MiB (middle third) -> %.1f MiB (last third): %+.1f%%\n", mid/(1<<20), last/(1<<20), 100*growth)
	if growth > maxGrowth {
		return fmt.Errorf("RSS grew %.1f%%, more than --max-growth %.0f%%", 100*growth, 100*maxGrowth)
	}
	return nil
}

// waitGroup waits for wg, a stream failure or ctx.
func waitGroup(ctx context.Context, wg *sync.WaitGroup, failed chan error) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case err := <-failed:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rss reads the process's resident set size from /proc (0 elsewhere).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident uint64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * uint64(os.Getpagesize())
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
