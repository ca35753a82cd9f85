// Command deadband is a varwatch filter plugin that drops float changes
// smaller than a threshold: a change passes only when it differs from the
// last value this filter passed for the same variable by at least
// threshold, so a noisy sensor stops flooding watchers with jitter.
//
// Params: threshold (required, >= 0).
//
// Initial values always pass and leave the state alone: they go to one new
// stream, while the state tracks what the chain's existing streams saw.
// Other types, registrations and deletions pass; a deletion forgets the
// variable.
package main

import (
	"errors"
	"math"

	"github.com/varwatch/varwatch/plugins/sdk"
)

// last is the last value passed per variable id. Pointers, so that the
// steady state (a known variable) costs one map lookup, not two: string
// hashing is slow inside Wasm.
var last = map[string]*float64{}

var threshold float64

func init() {
	sdk.RegisterInit(func(p sdk.Params) error {
		if err := p.Only("threshold"); err != nil {
			return err
		}
		if !p.Has("threshold") {
			return errors.New("param threshold is required")
		}
		t, err := p.Float("threshold", 0)
		if err != nil {
			return err
		}
		if t < 0 || math.IsNaN(t) || math.IsInf(t, 0) {
			return errors.New("param threshold must be a finite number >= 0")
		}
		threshold = t
		return nil
	})
	sdk.Register(filter)
}

func filter(u *sdk.Update, _ sdk.Params) sdk.Verdict {
	switch {
	case u.Kind == sdk.KindDeleted:
		delete(last, u.ID())
	case u.Kind == sdk.KindValueChange && u.Type == sdk.TypeFloat:
		f, _ := u.NewFloat()
		prev := last[u.ID()]
		switch {
		case prev == nil:
			last[u.ID()] = &f
		case math.Abs(f-*prev) < threshold:
			return sdk.Drop()
		default:
			*prev = f
		}
	}
	return sdk.Pass()
}

func main() {}
