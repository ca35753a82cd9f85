// Command varwatch-bench runs varwatch's benchmark scenarios, side by side
// with embedded NATS JetStream KV and etcd, and prints a table (or JSON).
// Every row verifies what it received; a failed row makes it exit 1.
//
//	cd benchmarks && go run ./cmd/varwatch-bench [flags]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/varwatch/varwatch/benchmarks/internal/bench"
	"github.com/varwatch/varwatch/grpcapi"
)

const usage = `varwatch-bench runs named benchmark scenarios against an in-process
varwatch server (or --server ADDR) and, side by side, against NATS
JetStream KV and etcd embedded on loopback, then prints one table.

Usage:
  cd benchmarks && go run ./cmd/varwatch-bench [flags]

Scenarios (--scenarios, comma-separated; default all, in this order):
  grpc-raw  grpc-go alone: one server stream sending small messages in a
            loop over loopback, the ceiling for one message per update
  engine    in-process sets/s through the engine loop, 1 and 4 writers
  delivery  changes/s received by 4 streams from 2 writers over loopback
            gRPC (100 writes per call, never more than 32 writes per key
            ahead of the slowest stream, within NATS KV's history): per-update, batched, coalesced; peers
  fanout    one writer at 1000 writes/s to 1k streams over 4 and over
            1000 connections, and at 100 writes/s to 10k streams over 16;
            first the same writer with no streams (the "writer at N% of
            its rate" note); events/s, acked writes/s, latency, memory per
            stream; each varwatch watch API (--apis) and the peers, with
            the same number of connections (memory per stream: growth of
            the whole process's live heap and stacks under load)
  latency   100 streams at 200, 2k and 10k offered writes/s, open loop:
            p50/p99/p999 from each write's scheduled time; each varwatch
            watch API and the peers; at 10k once more for varwatch with
            a pipelined writer (WriteVariables through the Go client
            Writer)
  memory    bytes per idle watch stream in a server-only child process,
            1k and 10k streams and as many watches on 4 Watch streams (Go
            heap + stacks, and RSS); then per watcher under the fan-out
            load (1k watchers, 4 connections), batched and Watch
  filters   the delivery scenario (batched) with no chain, a pass-through
            Wasm filter and a deadband (Go SDK, built here)
  cluster   one server vs 3 varwatch nodes over a 3-server JetStream
            cluster (replicas 3, file storage), all in this process:
            acked sets/s of 16 blocking writers spread over the nodes and
            of one pipelined writer; fan-out to 1k streams spread over the
            nodes from a writer on node A, flat out and at 1000 writes/s;
            p50/p99 set to watcher with the writer on node A and the
            streams on B and C; each 3-node row with its ratio to the
            one-node row ("vs 1 node"); about 40 s (skipped with --server)

Watch APIs (--apis): plain (WatchVariables, a stream per watch), batched
(WatchVariablesBatched), watch (the multiplexed Watch: one stream per
connection carries all its watches; the generated stub, no client
library), watch-value (Watch with VIEW_VALUE).

Every row checks what each stream received: per key, revisions strictly
increase and values are exactly the writes, in order (coalesced: the value
jumps by exactly coalesced_count writes), and every stream ends with every
key's last write. A violation marks the row FAILED and the exit status 1.

Columns: result (the row's unit), writes/s achieved (acknowledged, over
the writing), latency (set to receive, ms), CPU s (the whole process:
clients, server, peers), allocs per delivered update, and "vs PEER":
varwatch's advantage measured in this run (throughput rows:
varwatch/peer; latency rows: peer p99 / varwatch p99). "vs 1 node" is
the same for the cluster scenario's 3-node rows against its one-node
rows (the note says it the other way round for latency: "p99 8x").

Flags:
`

func main() {
	bench.MaybeChild()
	fs := flag.NewFlagSet("varwatch-bench", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	scenarios := fs.String("scenarios", "", "comma-separated scenarios to run (default all: "+strings.Join(bench.Scenarios, ",")+")")
	peers := fs.String("peers", "nats,etcd", "peers to embed and run side by side: nats,etcd or none")
	quick := fs.Bool("quick", false, "1s rows, fan-out only 1k streams at 200 writes/s over 4 connections, latency at 200 and 2k writes/s (a few minutes)")
	duration := fs.Duration("duration", 0, "how long each row writes (default 3s, --quick 1s)")
	server := fs.String("server", "", "external varwatch server host:port (default: one in-process per row); memory and filters need their own and are skipped")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of a table")
	markdown := fs.Bool("markdown", false, "print the table as Markdown")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof -top FILE)")
	apis := fs.String("apis", "", "varwatch watch APIs for the fan-out and latency rows, comma-separated (default all: "+strings.Join(bench.WatchAPIIDs(), ",")+")")
	fanoutConns := fs.Int("fanout-conns", 0, "run only the fan-out cases over this many connections (4, 1000 or 16 for 10k streams; 0: all)")
	repo := fs.String("repo", "", "varwatch repository root, for the filter plugins (default: found from the working directory)")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	t := grpcapi.DefaultTransport()
	fs.IntVar(&t.WriteBufferBytes, "write-buffer-bytes", t.WriteBufferBytes, "the in-process server's --write-buffer-bytes (as varwatch serve's flag)")
	fs.IntVar(&t.InitialWindowBytes, "initial-window-bytes", t.InitialWindowBytes, "the in-process server's --initial-window-bytes")
	fs.IntVar(&t.InitialConnWindowBytes, "initial-conn-window-bytes", t.InitialConnWindowBytes, "the in-process server's --initial-conn-window-bytes")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}

	o := bench.Options{Server: *server, Duration: *duration, RepoRoot: *repo, Log: os.Stderr, FanoutConns: *fanoutConns, Transport: &t}
	if *apis != "" {
		o.APIs = strings.Split(*apis, ",")
	}
	if *quiet {
		o.Log = nil
	}
	if *quick {
		o.Size = "quick"
	}
	if *scenarios != "" {
		o.Scenarios = strings.Split(*scenarios, ",")
	}
	if *peers != "none" && *peers != "" {
		o.Peers = strings.Split(*peers, ",")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "varwatch-bench:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "varwatch-bench:", err)
			os.Exit(2)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "varwatch-bench:", err)
		if rep == nil {
			os.Exit(2)
		}
	}
	if *asJSON {
		_ = rep.WriteJSON(os.Stdout)
	} else {
		tr := rep.Transport
		fmt.Printf("varwatch-bench: %s, %d CPUs, %s, server %s, %s rows; load average %s before, %s after; %.0fs\n",
			time.Now().Format("2006-01-02 15:04"), rep.CPUs, rep.Go, rep.Server, rep.Duration, rep.LoadAvg, rep.LoadEnd, rep.Seconds)
		fmt.Printf("server transport: --write-buffer-bytes %d --initial-window-bytes %d --initial-conn-window-bytes %d (0: gRPC's)\n\n",
			tr.WriteBufferBytes, tr.InitialWindowBytes, tr.InitialConnWindowBytes)
		_ = rep.WriteTable(os.Stdout, *markdown)
	}
	if rep.Failed() || err != nil {
		if *cpuprofile != "" {
			pprof.StopCPUProfile()
		}
		os.Exit(1)
	}
}
