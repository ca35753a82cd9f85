package main

import (
	"bufio"
	"context"
	"flag"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/varwatch/varwatch/internal/setrate"
)

var benchRounds = flag.Int("rounds", 10, "rounds of BenchmarkDurableVsMemoryServers, a second on each server")

// The price of durability as a user meets it: two `varwatch serve`
// processes, one in memory and one with --data-dir (--fsync batch, the
// default), both with their default settings, and 16 writers in this
// process, each setting its own variable with one SetVariable at a time
// over its server's connection, taking turns on the servers a second each
// for -rounds rounds (internal/setrate). Reports both servers' sets/s,
// the ratio of the totals, the median, worst and best round's ratio, and
// the durable server's fsyncs per 1,000 sets and mean fsync, read from its
// /metrics. journal's BenchmarkDurableVsMemory measures the same with the
// servers in the writers' process.
//
//	go test ./cmd/varwatch -run '^$' -bench DurableVsMemoryServers -benchtime 1x -rounds 10
func BenchmarkDurableVsMemoryServers(b *testing.B) {
	tmp := b.TempDir()
	bin := buildBinary(b, tmp)
	mem := startServer(b, bin)
	defer mem.stop(b, syscall.SIGTERM)
	dur := startServer(b, bin, "--data-dir", tmp+"/data", "--metrics-listen", "127.0.0.1:0")
	defer dur.stop(b, syscall.SIGTERM)
	memClient, closeMem := dial(b, mem.addr)
	defer closeMem()
	durClient, closeDur := dial(b, dur.addr)
	defer closeDur()
	const writers = 16
	ctx := context.Background()
	if err := setrate.Prepare(ctx, memClient, writers); err != nil {
		b.Fatal(err)
	}
	if err := setrate.Prepare(ctx, durClient, writers); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		fsyncs0, seconds0 := fsyncMetrics(b, dur.metricsAddr)
		r, err := setrate.Compare(memClient, durClient, writers, *benchRounds, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		fsyncs1, seconds1 := fsyncMetrics(b, dur.metricsAddr)
		r.Report(b, "memory", "batch", time.Second)
		_, durSets := r.Totals()
		b.ReportMetric((fsyncs1-fsyncs0)*1000/float64(durSets), "fsyncs/1000sets")
		b.ReportMetric((seconds1-seconds0)*1e6/(fsyncs1-fsyncs0), "µs/fsync")
	}
}

// fsyncMetrics scrapes the durable server's fsync count and the seconds
// they took.
func fsyncMetrics(b *testing.B, addr string) (fsyncs, seconds float64) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "varwatch_journal_fsyncs_total":
			fsyncs, _ = strconv.ParseFloat(value, 64)
		case "varwatch_journal_fsync_seconds_total":
			seconds, _ = strconv.ParseFloat(value, 64)
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return fsyncs, seconds
}
