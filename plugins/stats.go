package plugins

import (
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// counters are one plugin's totals over every chain that uses it. They
// outlive reloads (the Manager keeps them by plugin name) so a reload does
// not reset what the metrics endpoint shows.
//
// # Notes
//
// Read and written only with atomics: chains on many goroutines add to
// them, once per batch and stage.
type counters struct {
	in, passed, dropped, replaced atomic.Uint64
	restarts                      atomic.Uint64
	errors                        [numFaultKinds]atomic.Uint64
}

// Stats is a snapshot of one plugin's counters.
//
// Every update that reaches the plugin counts once in In and once in exactly
// one of Passed, Dropped and Replaced; updates of a batch the plugin failed
// on count as the on_error policy treated them (close counts as dropped).
// Errors counts failed batches by FaultKind name. Restarts counts instances
// re-created after a fault.
type Stats struct {
	Name                          string
	In, Passed, Dropped, Replaced uint64
	Restarts                      uint64
	Errors                        map[string]uint64
}

func (c *counters) snapshot(name string) Stats {
	s := Stats{
		Name:     name,
		In:       c.in.Load(),
		Passed:   c.passed.Load(),
		Dropped:  c.dropped.Load(),
		Replaced: c.replaced.Load(),
		Restarts: c.restarts.Load(),
		Errors:   make(map[string]uint64, numFaultKinds),
	}
	for k := range numFaultKinds {
		if n := c.errors[k].Load(); n > 0 {
			s.Errors[k.String()] = n
		}
	}
	return s
}

// ErrorTotal sums Errors.
func (s Stats) ErrorTotal() uint64 {
	var n uint64
	for _, v := range s.Errors {
		n += v
	}
	return n
}

// logStats writes s as one line of key/value pairs.
func logStats(log hclog.Logger, s Stats) {
	args := []any{"filter", s.Name, "in", s.In, "passed", s.Passed, "dropped", s.Dropped,
		"replaced", s.Replaced, "restarts", s.Restarts}
	for k := range numFaultKinds {
		if n := s.Errors[k.String()]; n > 0 {
			args = append(args, "errors_"+k.String(), n)
		}
	}
	log.Info("filter stats", args...)
}
