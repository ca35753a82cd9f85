package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// change is one acknowledged or delivered value change.
type change struct {
	rev  int64
	name string
	val  float64
}

func sortChanges(cs []change) {
	slices.SortFunc(cs, func(a, b change) int {
		if a.rev != b.rev {
			return int(a.rev - b.rev)
		}
		return strings.Compare(a.name, b.name)
	})
}

// sseChain is one logical watch of the randomized test: a first HTTP
// watch and every reconnection that resumed it by Last-Event-ID.
type sseChain struct {
	vars     []string // nil: every variable
	initial  bool
	slow     time.Duration
	stall    func() // when set: called once after the first event, to stop reading for a while
	snapshot int64  // -1 until known
	values   map[string]float64
	changes  []change
	pos      int64  // everything up to it was delivered
	lastID   string // as an EventSource keeps it
	resumes  int
	cutoffs  int
}

// TestWatchRandomized: writers write (single and atomic writes) while
// HTTP watchers start at random points, with and without initial values,
// over all or some variables; they drop their connections at random and
// resume by Last-Event-ID, and one reads slowly enough to be cut off with
// SLOW_CONSUMER and resume too. Each chain of watches is checked against
// a model built from the writers' acknowledgements: the snapshot is the
// state at its revision, and the changes are exactly the acknowledged
// changes after it, once each, in revision order, across every resume.
func TestWatchRandomized(t *testing.T) {
	const (
		writers   = 3
		perWriter = 200
		chains    = 8
		// stallChanges is how many acknowledged changes the slow watcher
		// lets go by unread. 150 were once not enough: a quarter of the
		// writes are atomic, one event for several changes, and about 90
		// events could fit in its buffer, the sockets' and the HTTP
		// layers' buffers on a loaded machine.
		stallChanges = 300
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	h := newHarness(t, harnessOptions{engine: engine.Config{SubscriptionBuffer: 12}})
	client := smallBuffers(t, h, Config{API: h.api})
	names := []string{"a", "b", "c", "d", "e", "f"}
	inc := h.session("s", names...)
	base := int64(len(names)) // the registrations' revisions

	var mu sync.Mutex
	var acked []change
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(i+1)))
			for n := range perWriter {
				val := float64(i*1000 + n)
				var got []change
				if r.IntN(4) == 0 {
					var ups []*pb.SetVariableRequest
					perm := r.Perm(len(names))[:1+r.IntN(len(names))]
					for _, j := range perm {
						ups = append(ups, &pb.SetVariableRequest{VariableIdentifier: names[j], Value: floatV(val)})
					}
					resp, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: ups})
					if err != nil {
						t.Error(err)
						return
					}
					for _, j := range perm {
						got = append(got, change{resp.GetRevision(), names[j], val})
					}
				} else {
					name := names[r.IntN(len(names))]
					resp, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: name, Value: floatV(val)})
					if err != nil {
						t.Error(err)
						return
					}
					got = append(got, change{resp.GetRevision(), name, val})
				}
				mu.Lock()
				acked = append(acked, got...)
				mu.Unlock()
			}
		}()
	}
	// final is the session's last revision, once the writers are done.
	final := make(chan int64)
	go func() {
		wg.Wait()
		close(final)
	}()
	lastRev := base + writers*perWriter

	var stalledFully atomic.Bool // the slow watcher stopped reading for stallChanges changes
	cs := make([]*sseChain, chains)
	var readers sync.WaitGroup
	for ci := range chains {
		r := rand.New(rand.NewPCG(seed, uint64(100+ci)))
		c := &sseChain{snapshot: -1, values: map[string]float64{}, initial: r.IntN(2) == 0}
		if r.IntN(2) == 0 {
			c.vars = []string{names[r.IntN(len(names))], names[r.IntN(len(names))]}
		}
		startAfter := r.IntN(writers * perWriter) // a late watcher, during the writes
		if ci == 0 {
			// The slow one: it stops reading while stallChanges changes
			// go by, far more than its buffer and the sockets hold, then
			// reads slowly.
			c.vars, c.slow, startAfter = nil, time.Millisecond, r.IntN(writers*perWriter/2)
			c.stall = func() {
				for n := ackedCount(); ackedCount() < n+stallChanges; {
					select {
					case <-final: // fewer writes were left
						return
					case <-time.After(time.Millisecond):
					}
				}
				stalledFully.Store(true)
			}
		}
		cs[ci] = c
		readers.Add(1)
		go func() {
			defer readers.Done()
			for ackedCount() < startAfter {
				time.Sleep(time.Millisecond)
			}
			if err := c.run(h, client, r, inc, lastRev); err != nil {
				t.Errorf("chain %d (vars %v, initial %v): %v", ci, c.vars, c.initial, err)
			}
		}()
	}
	<-final
	readers.Wait()
	if t.Failed() {
		return
	}

	sortChanges(acked)
	var resumes, cutoffs int
	for ci, c := range cs {
		resumes += c.resumes
		cutoffs += c.cutoffs
		want := map[string]float64{}
		var wantChanges []change
		for _, n := range names {
			if c.vars == nil || slices.Contains(c.vars, n) {
				want[n] = 0
			}
		}
		for _, ch := range acked {
			if c.vars != nil && !slices.Contains(c.vars, ch.name) {
				continue
			}
			if ch.rev <= c.snapshot {
				want[ch.name] = ch.val
			} else {
				wantChanges = append(wantChanges, ch)
			}
		}
		if c.initial && !mapsEqual(c.values, want) {
			t.Errorf("chain %d: snapshot at %d is %v, the model says %v", ci, c.snapshot, c.values, want)
		}
		got := slices.Clone(c.changes)
		for i := 1; i < len(got); i++ {
			if got[i].rev < got[i-1].rev {
				t.Errorf("chain %d: revision %d after %d", ci, got[i].rev, got[i-1].rev)
			}
		}
		sortChanges(got)
		if !slices.Equal(got, wantChanges) {
			t.Errorf("chain %d (vars %v, snapshot %d): %d changes, the model has %d after the snapshot\n got %v\nwant %v",
				ci, c.vars, c.snapshot, len(got), len(wantChanges), head(got), head(wantChanges))
		}
	}
	t.Logf("%d chains, %d acked changes, %d resumes of which %d after a slow-consumer cut-off", chains, len(acked), resumes, cutoffs)
	switch {
	case cutoffs == 0 && stalledFully.Load():
		t.Errorf("no watch was cut off as a slow consumer, though one stopped reading while %d changes went by", stallChanges)
	case cutoffs == 0:
		// On a loaded machine the slow watcher can start so late that
		// fewer than stallChanges changes are left: nothing to cut it
		// off for.
		t.Logf("the slow watcher's stall was cut short by the end of the writes: no cut-off to check in this run")
	}
	// Every chain hung up: every stream handler notices and returns.
	waitFor(t, "the watch streams to end", func() bool { return h.api.ActiveStreams() == 0 })
}

// waitFor waits up to waitTimeout for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func head(cs []change) []change { return cs[:min(len(cs), 12)] }

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// run follows the chain until it has everything up to lastRev, opening a
// watch and resuming it by Last-Event-ID whenever it is cut (by itself, at
// random, or by the server).
func (c *sseChain) run(h *harness, client *http.Client, r *rand.Rand, inc string, lastRev int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitTimeout)
	defer cancel()
	for attempt := 0; c.pos < lastRev; attempt++ {
		if ctx.Err() != nil {
			return fmt.Errorf("at %d of %d when the time ran out", c.pos, lastRev)
		}
		q := "session_id=s&heartbeat_interval=50ms"
		for _, v := range c.vars {
			q += "&variable=" + v
		}
		if c.initial {
			q += "&include_initial_values=true" // ignored on a resume, as a reconnecting EventSource repeats its URL
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/v1/watch?"+q, nil)
		if c.lastID != "" {
			req.Header.Set("Last-Event-ID", c.lastID)
			c.resumes++
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		cutAt := -1
		if r.IntN(3) == 0 {
			cutAt = r.IntN(30) // drop the connection after this many events
		}
		err = c.read(bufio.NewReader(resp.Body), inc, lastRev, cutAt)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// read takes one response's events. It returns nil when the response
// ended or was cut (cutAt events read) and the chain should resume.
func (c *sseChain) read(br *bufio.Reader, inc string, lastRev int64, cutAt int) error {
	for n := 0; c.pos < lastRev; n++ {
		if n == cutAt {
			return nil
		}
		ev, err := readEvent(br)
		if err == io.EOF {
			return fmt.Errorf("the stream ended without an end event at %d", c.pos)
		}
		if err != nil {
			return err
		}
		if c.slow > 0 {
			time.Sleep(c.slow)
		}
		if c.stall != nil {
			c.stall()
			c.stall = nil
		}
		if ev.id != "" {
			evInc, rev, err := parseEventID(ev.id)
			if err != nil || evInc != inc {
				return fmt.Errorf("event id %q: not of incarnation %s", ev.id, inc)
			}
			if rev < c.pos {
				return fmt.Errorf("event %s at %d after position %d", ev.name, rev, c.pos)
			}
		}
		var data map[string]any
		if err := json.Unmarshal([]byte(ev.data), &data); err != nil {
			return fmt.Errorf("event %s: %v", ev.name, err)
		}
		switch ev.name {
		case "created":
		case "snapshot":
			if c.snapshot >= 0 {
				return fmt.Errorf("a second snapshot")
			}
			rev, vals := eventChanges(data)
			c.snapshot, c.pos = rev, rev
			for _, ch := range vals {
				c.values[ch.name] = ch.val
			}
		case "heartbeat":
			rev, _ := strconv.ParseInt(data["revision"].(string), 10, 64)
			if c.snapshot < 0 {
				if c.initial {
					return fmt.Errorf("a heartbeat before the snapshot")
				}
				c.snapshot = rev // the greeting: the watch starts here
			}
			c.pos = max(c.pos, rev)
		case "update":
			if c.snapshot < 0 {
				return fmt.Errorf("an update before the snapshot")
			}
			rev, chs := eventChanges(data)
			if rev <= c.pos {
				return fmt.Errorf("update at %d, already at %d", rev, c.pos)
			}
			c.changes = append(c.changes, chs...)
			c.pos = rev
		case "end":
			if reasonOf(data) != grpcapi.ReasonSlowConsumer {
				return fmt.Errorf("ended: %s", ev.data)
			}
			resume, _ := strconv.ParseInt(errorInfoMeta(data)["resume_revision"].(string), 10, 64)
			if c.lastID != "" && resume != c.pos {
				return fmt.Errorf("cut off naming resume_revision %d; the last event was at %d", resume, c.pos)
			}
			c.cutoffs++
			return nil
		default:
			return fmt.Errorf("unknown event %q", ev.name)
		}
		if ev.id != "" {
			c.lastID = ev.id
		}
	}
	return nil
}

// eventChanges are the float changes of a snapshot or update event.
func eventChanges(data map[string]any) (int64, []change) {
	rev := int64(data["revision"].(float64))
	var out []change
	for _, u := range data["updates"].([]any) {
		um := u.(map[string]any)
		v := um["variable"].(map[string]any)
		f, _ := v["value"].(map[string]any)["float_value"].(float64)
		urev, _ := strconv.ParseInt(fmt.Sprint(um["revision"]), 10, 64)
		if um["update_type"] == "initial_value" {
			urev = rev
		}
		out = append(out, change{urev, v["name"].(string), f})
	}
	return rev, out
}

func reasonOf(st map[string]any) string { return reason(st) }
