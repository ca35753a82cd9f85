package grpcapi

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// muxChain is one logical watch of the randomized test: a first watch
// and the watches that resumed it after a cancel or a cut-off, whose
// changes together must be exactly the model's after the first snapshot.
type muxChain struct {
	vars     []string // nil: every variable
	filtered bool
	view     pb.View
	initial  bool

	snapshot int64
	values   map[string]float64 // the initial values, if asked
	changes  []change           // every value change delivered, over all its watches
	resumes  int
	cutoffs  int // of the resumes, after a SLOW_CONSUMER end
	// until, when > 0: the chain stopped for good (a filtered watch
	// cancelled) with everything up to it.
	until int64
}

// TestMuxRandomized: several Watch streams, one of them a slow reader,
// each creating and cancelling watches at random (plain and filtered,
// FULL and VALUE, with and without initial values) while writers write,
// resuming each cancelled or cut-off watch from where it stood. Every
// chain of watches is checked against a model built from the writers'
// acknowledgements: initial values are the state at the snapshot, and the
// changes are exactly the acknowledged changes after it, once each, in
// order, across every resume.
func TestMuxRandomized(t *testing.T) { muxRandomized(t) }

// TestMuxRandomizedPaced is TestMuxRandomized with every sender pausing
// after a wake, as on an overloaded server (sendpace.go).
func TestMuxRandomizedPaced(t *testing.T) {
	testPace.Store(int64(2 * time.Millisecond))
	t.Cleanup(func() { testPace.Store(0) })
	muxRandomized(t)
}

func muxRandomized(t *testing.T) {
	const (
		writers   = 3
		perWriter = 120
		streams   = 3
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	h, _ := newFilterHarness(t, harnessOptions{heartbeat: MinHeartbeatInterval,
		engine: engine.Config{SubscriptionBuffer: 12}, memberBuffer: 12}, nil, testPlugin("passthrough"))
	info, err := h.client.InitializeSession(h.ctx(), &pb.InitializeSessionRequest{SessionId: "s"})
	if err != nil {
		t.Fatal(err)
	}
	inc := info.GetSession().GetIncarnation()
	names := []string{"a", "b", "c", "d", "e", "f"}
	for _, n := range names {
		h.register("s", n, pb.VariableType_VARIABLE_TYPE_FLOAT, floatV(0), nil)
	}

	// The model: every acknowledged change, by revision.
	var mu sync.Mutex
	var acked []change
	var wg sync.WaitGroup
	errs := make(chan error, writers+streams)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(i+1)))
			for n := range perWriter {
				val := float64(i*1000 + n)
				var got []change
				if r.IntN(4) == 0 {
					perm := r.Perm(len(names))[:1+r.IntN(len(names))]
					var ups []*pb.SetVariableRequest
					for _, j := range perm {
						ups = append(ups, &pb.SetVariableRequest{VariableIdentifier: names[j], Value: floatV(val)})
					}
					resp, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: ups})
					if err != nil {
						errs <- err
						return
					}
					for _, j := range perm {
						got = append(got, change{resp.GetRevision(), names[j], val})
					}
				} else {
					name := names[r.IntN(len(names))]
					resp, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: name, Value: floatV(val)})
					if err != nil {
						errs <- err
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

	// Each stream's driver.
	var chainsMu sync.Mutex
	var chains []*muxChain
	var drivers sync.WaitGroup
	writing := make(chan struct{}) // closed when the writers are done and last is set
	var last atomic.Int64
	for si := range streams {
		drivers.Add(1)
		slow := time.Duration(0)
		if si == 0 {
			slow = 3 * time.Millisecond
		}
		m := h.openMuxSlow(slow)
		go func() {
			defer drivers.Done()
			r := rand.New(rand.NewPCG(seed, uint64(100+si)))
			nextID := int64(1)
			live := map[*muxChain]*muxWatcher{}
			// read takes w's events until its end or, with until > 0, a
			// heartbeat at until or later; it returns how the watch ended
			// (nil: still live) and the revision everything delivered is
			// complete up to.
			read := func(c *muxChain, w *muxWatcher, pos int64, until int64) (*pb.WatchEnded, int64) {
				for {
					ev := w.next()
					if e := ev.GetEnded(); e != nil {
						return e, pos
					}
					if cr := ev.GetCreated(); cr != nil {
						// Not a position: a resumed watch replays from
						// its start revision after it, a snapshot's
						// initial values are still to come.
						if c.snapshot < 0 && !c.initial {
							c.snapshot = cr.GetSnapshotRevision()
						}
						continue
					}
					u := ev.GetUpdate()
					switch u.GetUpdateType() {
					case "initial_value":
						c.values[u.GetVariable().GetName()] = u.GetVariable().GetValue().GetFloatValue()
					case "initial_values_complete":
						pos = max(pos, u.GetRevision())
						if c.snapshot < 0 {
							c.snapshot = u.GetRevision()
						}
					case "variable_registered":
						// Only a replay from before the writes (a snapshot
						// cut off before its initial values) has these.
						if u.GetRevision() > int64(len(names)) {
							w.m.t.Errorf("unexpected %v", u)
						}
					case "heartbeat":
						pos = max(pos, u.GetRevision())
						if until > 0 && u.GetRevision() >= until {
							return nil, pos
						}
					case "value_change":
						if c.view == pb.View_VIEW_VALUE && u.GetVariable().GetCreatedAt() != nil {
							w.m.t.Errorf("a VALUE watch got creation fields: %v", u)
						}
						c.changes = append(c.changes, change{u.GetRevision(), u.GetVariable().GetName(), u.GetVariable().GetValue().GetFloatValue()})
						pos = max(pos, u.GetRevision())
					default:
						w.m.t.Errorf("unexpected update %v", u)
					}
				}
			}
			var starts = map[*muxWatcher]int64{} // where each watch's position starts
			create := func(c *muxChain, start *int64) *muxWatcher {
				req := &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: c.vars}
				if c.filtered {
					req.Filters = []*pb.FilterSpec{filter("passthrough")}
				}
				if start != nil {
					req.StartRevision, req.Incarnation = start, inc
				} else {
					req.IncludeInitialValues = c.initial
				}
				w := m.create(nextID, req, c.view)
				nextID++
				starts[w] = req.GetStartRevision()
				return w
			}
			newChain := func() {
				c := &muxChain{snapshot: -1, values: map[string]float64{}, filtered: r.IntN(4) == 0,
					view: pb.View(r.IntN(3)), initial: r.IntN(2) == 0}
				if r.IntN(2) == 0 {
					c.vars = []string{names[r.IntN(len(names))], names[r.IntN(len(names))]}
				}
				if c.filtered {
					c.initial = true // a filtered watch restarts from a snapshot
				}
				chainsMu.Lock()
				chains = append(chains, c)
				chainsMu.Unlock()
				live[c] = create(c, nil)
			}
			// resume handles the end e of c's watch w, read up to pos: a
			// cancel or a cut-off resumes from pos (a filtered chain
			// cannot resume: it is done). It returns the new watch.
			resume := func(c *muxChain, w *muxWatcher, e *pb.WatchEnded, pos int64) *muxWatcher {
				if c.snapshot < 0 {
					// Cut off before its initial values went out: it has
					// nothing, and resumes from revision 0 (pos).
					c.snapshot, c.initial = 0, false
				}
				switch codes.Code(e.GetCode()) {
				case codes.Canceled:
				case codes.ResourceExhausted:
					c.cutoffs++
					if rr, _ := strconv.ParseInt(e.GetMetadata()["resume_revision"], 10, 64); rr != pos {
						errs <- fmt.Errorf("watch %d cut off with resume_revision %d, but it had everything up to %d", w.id, rr, pos)
						return nil
					}
				default:
					errs <- fmt.Errorf("watch %d ended %v", w.id, e)
					return nil
				}
				if c.filtered {
					c.until = max(pos, 1)
					return nil
				}
				c.resumes++
				return create(c, proto.Int64(pos))
			}
			stop := func(c *muxChain) {
				w := live[c]
				w.cancel() // ignored if it was cut off already
				e, pos := read(c, w, starts[w], 0)
				delete(live, c)
				if next := resume(c, w, e, pos); next != nil {
					live[c] = next
				}
			}
			for range 4 {
				newChain()
			}
			for {
				select {
				case <-writing:
					// Writers done: read every live watch up to the last
					// revision, resuming those cut off on the way.
					final := last.Load()
					for c, w := range live {
						for w != nil {
							e, pos := read(c, w, starts[w], final)
							if e == nil {
								break
							}
							w = resume(c, w, e, pos)
						}
					}
					return
				case <-time.After(time.Duration(r.IntN(3000)) * time.Microsecond):
				}
				switch {
				case r.IntN(3) == 0:
					newChain()
				case len(live) > 0:
					cs := slices.Collect(maps.Keys(live))
					stop(cs[r.IntN(len(cs))])
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	errs = make(chan error, streams*64)
	got, err := h.client.GetSession(h.ctx(), &pb.GetSessionRequest{SessionId: "s"})
	if err != nil {
		t.Fatal(err)
	}
	last.Store(got.GetSession().GetRevision())
	close(writing)
	drivers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	slices.SortStableFunc(acked, func(a, b change) int { return int(a.rev - b.rev) })
	for i, c := range chains {
		var want []change
		state := map[string]float64{}
		for _, n := range names {
			if c.vars == nil || slices.Contains(c.vars, n) {
				state[n] = 0
			}
		}
		for _, ch := range acked {
			if _, ok := state[ch.name]; !ok {
				continue
			}
			if ch.rev <= c.snapshot {
				state[ch.name] = ch.value
			} else if c.until == 0 || ch.rev <= c.until {
				want = append(want, ch)
			}
		}
		// Within one atomic set the order is the request's; the model
		// keeps each writer's order only, so compare revision by revision
		// as sets.
		if !sameChanges(c.changes, want) {
			t.Fatalf("chain %d (vars %v, filtered %v, view %v, snapshot %d, %d resumes):\ngot  %v\nwant %v",
				i, c.vars, c.filtered, c.view, c.snapshot, c.resumes, c.changes, want)
		}
		if c.initial && fmt.Sprint(c.values) != fmt.Sprint(state) {
			t.Fatalf("chain %d initial values %v, want %v", i, c.values, state)
		}
	}
	resumes, cutoffs := 0, 0
	for _, c := range chains {
		resumes += c.resumes
		cutoffs += c.cutoffs
	}
	t.Logf("%d chains, %d resumes, %d of them after a cut-off", len(chains), resumes, cutoffs)
}

// sameChanges reports whether got and want hold the same changes in the
// same revision order, each revision's changes (an atomic set) compared
// as a set.
func sameChanges(got, want []change) bool {
	if len(got) != len(want) {
		return false
	}
	key := func(c change) string { return fmt.Sprintf("%d %s %v", c.rev, c.name, c.value) }
	for i := 0; i < len(got); {
		j := i
		for j < len(got) && got[j].rev == got[i].rev {
			j++
		}
		if j > len(want) || want[j-1].rev != got[i].rev || (j < len(want) && want[j].rev == got[i].rev) {
			return false
		}
		g := slices.Sorted(slices.Values(mapSlice(got[i:j], key)))
		w := slices.Sorted(slices.Values(mapSlice(want[i:j], key)))
		if !slices.Equal(g, w) {
			return false
		}
		i = j
	}
	return true
}

func mapSlice[T, U any](s []T, f func(T) U) []U {
	out := make([]U, len(s))
	for i, v := range s {
		out[i] = f(v)
	}
	return out
}
