package plugins

import (
	"context"
	"errors"
	"time"

	"github.com/varwatch/varwatch/plugins/abi"
)

// stage is one filter of a chain: a plugin, the params its instances are
// initialized with, and the live instance.
//
// # Notes
//
// Owned by its Chain and only touched with Chain.mu held, which is what
// keeps its instance single-threaded.
type stage struct {
	plugin *plugin
	// params is the encoded varwatch_init input: the plugin's defaults
	// overlaid with the watch's params.
	params []byte
	// inst is nil after a fault until the stage re-creates it.
	inst *instance
	// faults counts consecutive failed batches and restarts; retryAt is
	// when the stage may try to re-create its instance.
	faults  int
	retryAt time.Time

	// Scratch reused from batch to batch.
	buf      []byte
	verdicts []abi.Verdict
}

// backoff is the wait before re-creating an instance after the n-th
// consecutive fault: none after the first (a one-off crash costs one
// batch), then base, 2*base, ... up to limit.
func backoff(n int, base, limit time.Duration) time.Duration {
	if n <= 1 {
		return 0
	}
	d := base
	for i := 2; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// run filters the live updates of batch through the stage: live lists the
// indexes into batch still in the chain, acc holds what earlier stages
// decided (their replacements are what this stage sees). It returns one
// verdict per live update, or allPass (and no verdicts) when the plugin
// passed them all, or a fault after which the stage has no instance. A
// context error means the caller gave up; it is no fault.
func (s *stage) run(ctx context.Context, c *Chain, batch []Update, acc []Verdict, live []int32) (vs []abi.Verdict, allPass bool, err error) {
	if s.inst == nil {
		if err := s.restart(ctx, c); err != nil {
			return nil, false, err
		}
	}
	s.buf = abi.AppendBatchHeader(s.buf[:0], len(live))
	for _, i := range live {
		v := &acc[i]
		s.buf = abi.AppendUpdate(s.buf, &batch[i], v.New, v.Old, v.Metadata)
	}
	out, err := s.inst.run(ctx, s.buf)
	if err == nil {
		if abi.AllPass(out, len(live)) {
			s.faults = 0
			return nil, true, nil
		}
		s.verdicts, err = abi.DecodeVerdicts(out, len(live), func(j int) abi.Type { return batch[live[j]].Type }, s.verdicts)
		if err != nil {
			err = &fault{FaultMalformed, err}
		}
	}
	if err != nil {
		f, isFault := classify(ctx, s.inst, err)
		s.inst.close(ctx)
		s.inst = nil
		if !isFault {
			return nil, false, ctx.Err()
		}
		s.faulted(c, f)
		return nil, false, f
	}
	s.faults = 0
	return s.verdicts, false, nil
}

// restart re-creates the instance once the backoff allows.
func (s *stage) restart(ctx context.Context, c *Chain) error {
	if time.Now().Before(s.retryAt) {
		return &fault{FaultUnavailable, errors.New("instance is restarting after a fault")}
	}
	in, err := s.plugin.instantiate(ctx, s.params)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f := &fault{FaultInit, err}
		s.faulted(c, f)
		return f
	}
	s.inst = in
	s.plugin.stats.restarts.Add(1)
	s.plugin.log.Info("filter instance re-created", "chain", c.name, "restarts", s.plugin.stats.restarts.Load())
	return nil
}

// faulted counts a fault and schedules the next restart.
func (s *stage) faulted(c *Chain, f *fault) {
	s.faults++
	wait := backoff(s.faults, c.mgr.backoff, c.mgr.maxBackoff)
	s.retryAt = time.Now().Add(wait)
	s.plugin.log.Warn("filter failed", "chain", c.name, "kind", f.kind.String(), "policy", s.plugin.cfg.OnError.String(),
		"restart_in", wait, "error", f.err)
}

func (s *stage) close(ctx context.Context) {
	if s.inst != nil {
		s.inst.close(ctx)
		s.inst = nil
	}
}
