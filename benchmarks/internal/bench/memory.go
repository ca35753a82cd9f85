package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/varwatch/varwatch/engine"
)

// childEnv makes the harness binary (or test binary) run as a bare
// varwatch server instead, so the memory scenario measures the server's
// process alone.
const childEnv = "VARWATCH_BENCH_CHILD"

// MaybeChild runs the child server and exits when the process was started
// as one; otherwise it returns. Call it first in main (and TestMain).
func MaybeChild() {
	if os.Getenv(childEnv) != "serve" {
		return
	}
	s, err := startServer(engine.Config{}, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("addr", s.addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "stats" {
			runtime.GC()
			debug.FreeOSMemory()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Println("stats", ms.HeapAlloc, ms.StackInuse, rssBytes(), runtime.NumGoroutine())
		}
	}
	os.Exit(0) // stdin closed: the parent is done
}

type child struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	addr string
}

func startChild() (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=serve")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	line, err := c.line()
	if err != nil {
		c.close()
		return nil, err
	}
	addr, ok := strings.CutPrefix(line, "addr ")
	if !ok {
		c.close()
		return nil, fmt.Errorf("child server said %q", line)
	}
	c.addr = addr
	return c, nil
}

func (c *child) line() (string, error) {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return "", err
		}
		return "", io.ErrUnexpectedEOF
	}
	return c.out.Text(), nil
}

type childStats struct{ heap, stack, rss, goroutines int64 }

func (c *child) stats() (childStats, error) {
	var s childStats
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		return s, err
	}
	line, err := c.line()
	if err != nil {
		return s, err
	}
	_, err = fmt.Sscanf(line, "stats %d %d %d %d", &s.heap, &s.stack, &s.rss, &s.goroutines)
	return s, err
}

func (c *child) close() {
	_ = c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// memory: what an idle watch stream costs the server, measured in a child
// process that is nothing but the server: Go heap plus goroutine stacks
// after GC, and RSS, before and after opening N streams (one variable,
// heartbeats every 5s), divided by N; then the same N as watches on 4
// multiplexed Watch streams. Then one write, which every stream
// must receive, proves the streams were live.
func (h *harness) memory(ctx context.Context) {
	for _, n := range h.sz.memoryStreams {
		for _, mux := range []bool{false, true} {
			r := Row{Scenario: "memory", Variant: fmt.Sprintf("%d idle streams", n), System: "varwatch", Unit: "B/stream"}
			conns := max(1, min(n/64, 16))
			if mux {
				conns = 4
				r.Variant, r.API = fmt.Sprintf("%d idle watches", n), "Watch (4 streams)"
			}
			if h.o.Server != "" {
				r.Status, r.Note = "skipped", "needs the harness's own server process"
				h.add(r)
				continue
			}
			h.add(h.memoryRow(ctx, r, n, vwMode{mux: mux, heartbeat: 5 * time.Second}, conns))
		}
	}
	h.memoryUnderLoad(ctx)
}

// memoryUnderLoad: the first fan-out case (1,000 watchers over 4
// connections, 1,000 writes/s) against a server in a child process, whose
// heap plus stacks after GC are taken once the streams are prepared and
// again when the last write was acknowledged (the streams still catching
// up): the server's own memory per watcher under load, without the
// clients' or the peers' that the fan-out rows' figure includes.
func (h *harness) memoryUnderLoad(ctx context.Context) {
	fc := h.sz.fanout[0]
	for _, api := range []watchAPI{watchAPIs[1], watchAPIs[2]} {
		r := Row{Scenario: "memory", Variant: fmt.Sprintf("%d watchers, %d writes/s, %d conns", fc.streams, fc.rate, fc.conns),
			API: api.name, System: "varwatch", Unit: "B/stream"}
		if h.o.Server != "" {
			r.Status, r.Note = "skipped", "needs the harness's own server process"
			h.add(r)
			continue
		}
		h.add(h.memoryLoadRow(ctx, r, fc, api.mode))
	}
}

func (h *harness) memoryLoadRow(ctx context.Context, r Row, fc fanoutCase, mode vwMode) Row {
	c, err := startChild()
	if err != nil {
		return failRow(r, err)
	}
	defer c.close()
	sys, err := newVarwatch(c.addr, mode, nil, fc.conns)
	if err != nil {
		return failRow(r, err)
	}
	defer sys.close()
	var before, after childStats
	var errBefore, errAfter error
	o := openLoopRun{streams: fc.streams, keys: h.sz.keys, rate: fc.rate, lanes: 4, duration: h.sz.duration, drain: h.sz.drainTimeout,
		beforeStreams: func() { before, errBefore = c.stats() },
		afterWrites:   func() { after, errAfter = c.stats() }}
	m := startMeter()
	res, err := o.run(ctx, sys)
	if err == nil {
		err = errors.Join(errBefore, errAfter)
	}
	if err != nil {
		return failRow(r, err)
	}
	m.stop(&r, res.updates)
	r.WritesPerSec, r.Delivered = float64(res.writes)/res.writing.Seconds(), res.updates
	r.setLatency(res.hist)
	per := func(a, b int64) float64 { return float64(b-a) / float64(fc.streams) }
	r.Value = per(before.heap+before.stack, after.heap+after.stack)
	r.MemPerStream = r.Value
	r.Note = fmt.Sprintf("server process only, after GC when the last write was acked: heap %s + stacks %s; %.2f goroutines per watcher",
		fmtNum(per(before.heap, after.heap)), fmtNum(per(before.stack, after.stack)), per(before.goroutines, after.goroutines))
	return r
}

func (h *harness) memoryRow(ctx context.Context, r Row, n int, mode vwMode, conns int) Row {
	c, err := startChild()
	if err != nil {
		return failRow(r, err)
	}
	defer c.close()
	sys, err := newVarwatch(c.addr, mode, nil, conns)
	if err != nil {
		return failRow(r, err)
	}
	defer sys.close()
	if err := sys.prepare(ctx, 1); err != nil {
		return failRow(r, err)
	}
	before, err := c.stats()
	if err != nil {
		return failRow(r, err)
	}
	m := startMeter()
	cs, stop, err := openStreams(ctx, sys, n, streamOpts{scheme: counterScheme(1), ordered: true})
	if err != nil {
		return failRow(r, err)
	}
	defer stop()
	time.Sleep(200 * time.Millisecond) // let each stream's greeting heartbeat go out
	after, err := c.stats()
	if err != nil {
		return failRow(r, err)
	}
	w, err := sys.newWriter(ctx)
	if err != nil {
		return failRow(r, err)
	}
	defer w.close()
	if err := w.write(ctx, []kv{{0, 1}}); err != nil {
		return failRow(r, err)
	}
	if _, err := waitAll(cs, 1, h.sz.drainTimeout); err != nil {
		return failRow(r, err)
	}
	m.stop(&r, 0)
	per := func(a, b int64) float64 { return float64(b-a) / float64(n) }
	r.Value = per(before.heap+before.stack, after.heap+after.stack)
	r.Note = fmt.Sprintf("server process only: heap %s + stacks %s; RSS %s per stream; %.1f goroutines per stream",
		fmtNum(per(before.heap, after.heap)), fmtNum(per(before.stack, after.stack)), fmtNum(per(before.rss, after.rss)),
		per(before.goroutines, after.goroutines))
	return r
}
