package plugins

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/varwatch/varwatch/plugins/abi"
)

// Chain is an ordered list of filters with their params, shared by every
// watch that asked for the same list (see Manager.Acquire). Run passes a
// batch through the filters in order and answers one verdict per update.
//
// A nil *Chain is the empty chain: Run passes everything, Release does
// nothing. Acquire returns nil when no filter applies, so callers can skip
// the filtering step altogether.
//
// # Notes
//
// Safe for concurrent use, but Run holds mu for the whole batch, so each
// plugin instance runs on one goroutine at a time and calls are serialized.
// A chain's stateful filters (deadband, ratelimit) need its updates in
// order anyway: the integration runs each distinct chain from one worker
// goroutine, once per update however many streams share it, and mu is then
// uncontended.
type Chain struct {
	mgr *Manager
	// key identifies the filter list and params; name is its readable
	// form for logs ("scale|deadband").
	key, name string
	// specs is the full filter list, default chain included, which a
	// reload rebuilds the stages from.
	specs []FilterSpec
	// refs counts Acquire calls not yet released; guarded by Manager.mu.
	refs int

	mu     sync.Mutex // guards everything below
	stages []*stage
	closed bool
	live   []int32 // scratch: indexes still in the chain
}

// Name returns the chain's filters joined with "|", for logs.
func (c *Chain) Name() string {
	if c == nil {
		return ""
	}
	return c.name
}

// Run filters batch through the chain, in order, and returns one verdict
// per update in out (reused when it has the capacity). verdict i is Drop
// when some filter dropped update i, Replace with the accumulated
// replacements (New, Old, Metadata; nil fields unchanged) when some filter
// replaced part of it, Pass otherwise. Later filters see earlier filters'
// replacements and never see dropped updates.
//
// A filter that fails gets its on_error policy for the batch: pass and drop
// are applied and Run goes on; close makes Run return a *FaultError
// (errors.Is ErrFilterFailed) and the caller must end the chain's streams.
// Run also returns ctx.Err() if ctx ends first (ctx bounds the whole call;
// the per-batch plugin deadline applies inside it) and ErrClosed after
// Release or Manager.Close.
//
// ctx should belong to the worker that runs the chain, not to one of the
// streams sharing it: a canceled ctx interrupts a plugin mid-batch, which
// costs the chain its instance.
func (c *Chain) Run(ctx context.Context, batch []Update, out []Verdict) ([]Verdict, error) {
	if cap(out) < len(batch) {
		out = make([]Verdict, len(batch))
	}
	out = out[:len(batch)]
	clear(out)
	if c == nil || len(batch) == 0 {
		return out, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return out, ErrClosed
	}
	live := c.live[:0]
	for i := range batch {
		live = append(live, int32(i))
	}
	defer func() { c.live = live[:0] }()
	for _, s := range c.stages {
		if len(live) == 0 {
			break
		}
		st := s.plugin.stats
		vs, allPass, err := s.run(ctx, c, batch, out, live)
		if err != nil {
			var f *fault
			if !errors.As(err, &f) {
				return out, err // the caller's ctx ended; nothing counted
			}
			st.in.Add(uint64(len(live)))
			st.errors[f.kind].Add(1)
			switch s.plugin.cfg.OnError {
			case OnErrorPass:
				st.passed.Add(uint64(len(live)))
				continue
			case OnErrorDrop:
				st.dropped.Add(uint64(len(live)))
				for _, i := range live {
					out[i] = Verdict{Action: abi.Drop}
				}
				live = live[:0]
				continue
			default:
				st.dropped.Add(uint64(len(live)))
				return out, &FaultError{Plugin: s.plugin.cfg.Name, Kind: f.kind, Err: f.err}
			}
		}
		st.in.Add(uint64(len(live)))
		if allPass {
			st.passed.Add(uint64(len(live)))
			continue
		}
		var passed, dropped, replaced uint64
		kept := live[:0]
		for j, i := range live {
			v := &vs[j]
			switch v.Action {
			case abi.Drop:
				dropped++
				out[i] = Verdict{Action: abi.Drop}
				continue
			case abi.Replace:
				replaced++
				merge(&out[i], v)
			default:
				passed++
			}
			kept = append(kept, i)
		}
		live = kept
		st.passed.Add(passed)
		st.dropped.Add(dropped)
		st.replaced.Add(replaced)
	}
	return out, nil
}

// merge folds a stage's Replace verdict into the accumulated one.
func merge(acc, v *Verdict) {
	acc.Action = abi.Replace
	if v.New != nil {
		acc.New = v.New
	}
	if v.Old != nil {
		acc.Old = v.Old
	}
	if v.Metadata != nil {
		acc.Metadata = v.Metadata
	}
}

// Apply returns u with v's replacements applied: the update a watcher of
// the chain should see when v is not Drop. It copies nothing but u itself.
func Apply(u Update, v Verdict) Update {
	if v.New != nil {
		u.New = *v.New
	}
	if v.Old != nil {
		u.Old = *v.Old
	}
	if v.Metadata != nil {
		u.Metadata = v.Metadata
	}
	return u
}

// Release ends one Acquire's use of the chain; call it once per Acquire.
// The last release closes the chain's instances, after a Run in progress.
func (c *Chain) Release() {
	if c == nil {
		return
	}
	c.mgr.release(c)
}

// swapStages replaces the stages (reload) and returns the old ones, or
// false with nothing changed when the chain closed meanwhile.
func (c *Chain) swapStages(stages []*stage) ([]*stage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false
	}
	old := c.stages
	c.stages = stages
	return old, true
}

// close marks the chain closed and closes its instances, waiting for a Run
// in progress to finish.
func (c *Chain) close(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, s := range c.stages {
		s.close(ctx)
	}
}

// chainKey is the canonical identity of a filter list: names and params
// (sorted), length-prefixed so no two lists share a key.
func chainKey(specs []FilterSpec) (key, name string) {
	var b []byte
	names := make([]string, len(specs))
	for i, f := range specs {
		b = abi.AppendMetadata(b, abi.Metadata{{Key: f.Name}})
		b = abi.AppendParams(b, f.Params)
		names[i] = f.Name
	}
	return string(b), strings.Join(names, "|")
}
