// Command ratelimit is a varwatch filter plugin that passes at most rate
// value changes per variable per window (default one second), keeping the
// latest: when more changes of a variable arrive in one batch than its
// window has room for, the earlier ones are dropped and the last ones pass,
// so a watcher's view ends on the newest value the budget allows.
//
// Params: rate (required, >= 1), per (window length, default 1s).
//
// Windows are fixed: one opens at a variable's first change after the
// previous one closed, and time is the update's own timestamp, not the
// plugin's clock. A filter only answers for the updates it is given, so a
// change dropped because the window was already full when it arrived is not
// sent later; with the server's natural batching a burst usually lands in
// one batch, where the latest values win. Initial values, registrations and
// deletions always pass; a deletion forgets the variable.
package main

import (
	"errors"
	"time"

	"github.com/varwatch/varwatch/plugins/sdk"
)

// window is one variable's current window: when it opened and how many
// changes it has passed; kept counts this batch's passes while deciding.
type window struct {
	start      int64
	used, kept int64
}

var (
	rate    int64
	per     int64 // nanoseconds
	windows = map[string]*window{}
	// groups[i] is update i's window in the batch being decided, nil for
	// updates the limit does not apply to. Reused across batches.
	groups  []*window
	touched []*window
)

func init() {
	sdk.RegisterInit(func(p sdk.Params) error {
		if err := p.Only("rate", "per"); err != nil {
			return err
		}
		if !p.Has("rate") {
			return errors.New("param rate is required")
		}
		var err error
		if rate, err = p.Int("rate", 0); err != nil {
			return err
		}
		if rate < 1 {
			return errors.New("param rate must be at least 1")
		}
		d, err := p.Duration("per", time.Second)
		if err != nil {
			return err
		}
		if d <= 0 {
			return errors.New("param per must be positive")
		}
		per = int64(d)
		return nil
	})
	sdk.RegisterBatch(filter)
}

func filter(batch []sdk.Update, _ sdk.Params, out []sdk.Verdict) {
	if cap(groups) < len(batch) {
		groups = make([]*window, len(batch))
	}
	groups = groups[:len(batch)]
	clear(groups)
	touched = touched[:0]
	// Forward: put each change into its variable's window, opening a new
	// one when the current has closed.
	for i := range batch {
		u := &batch[i]
		switch u.Kind {
		case sdk.KindDeleted:
			delete(windows, u.ID())
			continue
		case sdk.KindValueChange:
		default:
			continue
		}
		t := u.Time
		if t == 0 {
			t = time.Now().UnixNano()
		}
		id := u.ID()
		w := windows[id]
		if w == nil || t >= w.start+per {
			w = &window{start: t}
			windows[id] = w
		}
		if w.kept == 0 {
			touched = append(touched, w)
		}
		w.kept++ // counts candidates for now; reset below
		groups[i] = w
	}
	for _, w := range touched {
		w.kept = 0
	}
	// Backward: the latest changes of each window take its free slots.
	for i := len(batch) - 1; i >= 0; i-- {
		w := groups[i]
		if w == nil {
			continue
		}
		if w.used+w.kept < rate {
			w.kept++
		} else {
			out[i] = sdk.Drop()
		}
	}
	for _, w := range touched {
		w.used += w.kept
		w.kept = 0
	}
}

func main() {}
