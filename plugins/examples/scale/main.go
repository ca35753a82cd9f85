// Command scale is a varwatch filter plugin for linear unit conversion: it
// replaces float values x with a*x + b (Celsius to Fahrenheit is a=1.8,
// b=32), both the new and the old value, so watchers see one unit
// throughout.
//
// Params: a (default 1), b (default 0), match (a path.Match glob over
// variable names, default "*"), unit (when set, the metadata key "unit" of
// converted updates is set to it).
package main

import (
	"errors"
	"math"
	"path"

	"github.com/varwatch/varwatch/plugins/sdk"
)

var (
	a, b  float64
	match string
	unit  string
)

func init() {
	sdk.RegisterInit(func(p sdk.Params) error {
		if err := p.Only("a", "b", "match", "unit"); err != nil {
			return err
		}
		var err error
		if a, err = p.Float("a", 1); err != nil {
			return err
		}
		if b, err = p.Float("b", 0); err != nil {
			return err
		}
		if math.IsNaN(a) || math.IsInf(a, 0) || math.IsNaN(b) || math.IsInf(b, 0) {
			return errors.New("params a and b must be finite")
		}
		match = p.String("match", "*")
		if _, err := path.Match(match, ""); err != nil {
			return errors.New("param match: bad glob pattern")
		}
		unit = p.String("unit", "")
		return nil
	})
	sdk.Register(filter)
}

func filter(u *sdk.Update, _ sdk.Params) sdk.Verdict {
	f, isFloat := u.NewFloat()
	if !isFloat {
		return sdk.Pass()
	}
	if ok, _ := path.Match(match, u.Name()); !ok {
		return sdk.Pass()
	}
	v := sdk.ReplaceValue(sdk.Float(a*f + b))
	if old := u.Old(); old.Type == sdk.TypeFloat {
		v = v.WithOld(sdk.Float(a*old.Float + b))
	}
	if unit != "" {
		md := make(sdk.Metadata, 0, len(u.Metadata())+1)
		for _, kv := range u.Metadata() {
			if kv.Key != "unit" {
				md = append(md, kv)
			}
		}
		v = v.WithMetadata(append(md, sdk.KV{Key: "unit", Value: unit}))
	}
	return v
}

func main() {}
