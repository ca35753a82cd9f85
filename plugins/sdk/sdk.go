// Package sdk is the Go guest SDK for varwatch filter plugins: a plugin
// author writes one function over typed updates and never touches the ABI's
// bytes or pointers.
//
// A plugin is a main package that registers its filter in init (a Wasm
// reactor runs package initializers but never main):
//
//	package main
//
//	import "github.com/varwatch/varwatch/plugins/sdk"
//
//	func init() {
//		sdk.Register(func(u *sdk.Update, p sdk.Params) sdk.Verdict {
//			if f, ok := u.NewFloat(); ok && f < 0 {
//				return sdk.Drop()
//			}
//			return sdk.Pass()
//		})
//	}
//
//	func main() {}
//
// built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o myfilter.wasm .
//
// The SDK provides the exports of plugins/ABI.md (varwatch_abi_version,
// varwatch_alloc, varwatch_init, varwatch_filter, varwatch_last_error) when
// built for wasip1; on other platforms the package still compiles, so the
// plugin's logic can be unit-tested natively.
//
// # Notes
//
// The host runs one instance of the plugin per chain that uses it and calls
// it from one goroutine at a time, so package-level state (a map of last
// values, say) needs no locks. That state lives as long as the instance: a
// fault or a reload starts a fresh one.
//
// An Update is a view of the host's bytes, decoded lazily: Kind, Type,
// Revision and Time are fields, everything else is a method (New, Old, ID,
// Name, Source, Metadata; NewFloat for float filters) that decodes on call.
// Go runs about ten times slower inside Wasm than natively, so a filter
// pays only for what it reads: a pass-through or a float threshold never
// decodes a string. An Update and the slices its methods return (Metadata,
// Embedding, Tensor) are valid until the filter returns; copy a slice to
// keep it. Strings are safe to keep.
package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/varwatch/varwatch/plugins/abi"
)

// The wire types, under the names plugin authors use. Update is the lazy
// view of one update (abi.UpdateView); Fields is its eager form, what
// Updates builds views from.
type (
	Update   = abi.UpdateView
	Fields   = abi.Update
	Value    = abi.Value
	Tensor   = abi.Tensor
	Type     = abi.Type
	Kind     = abi.Kind
	KV       = abi.KV
	Metadata = abi.Metadata
	Verdict  = abi.Verdict
	Action   = abi.Action
)

// Value types and update kinds.
const (
	TypeNone      = abi.TypeNone
	TypeFloat     = abi.TypeFloat
	TypeInteger   = abi.TypeInteger
	TypeString    = abi.TypeString
	TypeBoolean   = abi.TypeBoolean
	TypeChoice    = abi.TypeChoice
	TypeModule    = abi.TypeModule
	TypeEmbedding = abi.TypeEmbedding
	TypeTensor    = abi.TypeTensor

	KindInitialValue = abi.KindInitialValue
	KindValueChange  = abi.KindValueChange
	KindRegistered   = abi.KindRegistered
	KindDeleted      = abi.KindDeleted
)

// Value constructors.
var (
	Float       = abi.Float
	Integer     = abi.Integer
	String      = abi.String
	Boolean     = abi.Boolean
	Choice      = abi.Choice
	Module      = abi.Module
	Embedding   = abi.Embedding
	TensorValue = abi.TensorValue
)

// Pass lets the update through unchanged.
func Pass() Verdict { return Verdict{Action: abi.Pass} }

// Drop removes the update from the stream.
func Drop() Verdict { return Verdict{Action: abi.Drop} }

// ReplaceValue lets the update through with v as its new value; v must have
// the update's type or the host treats the output as malformed.
func ReplaceValue(v Value) Verdict { return Verdict{Action: abi.Replace, New: &v} }

// ReplaceValues replaces both the new and the old value: what a filter that
// hides or converts values needs, since watchers see both.
func ReplaceValues(newV, oldV Value) Verdict {
	return Verdict{Action: abi.Replace, New: &newV, Old: &oldV}
}

// ReplaceMetadata lets the update through with md as its whole metadata; an
// empty md clears it.
//
// Verdicts combine: Pass().WithOld(v), ReplaceValue(v).WithMetadata(md).
func ReplaceMetadata(md Metadata) Verdict { return Pass().WithMetadata(md) }

// Updates returns views of the given updates, as a filter would get them
// from the host: for unit tests of a filter's logic, run natively.
func Updates(fs ...Fields) []Update {
	var d abi.BatchDecoder
	us, err := d.View(abi.AppendBatch(nil, fs))
	if err != nil {
		panic("sdk: " + err.Error()) // AppendBatch always frames correctly
	}
	return us
}

// Params are a plugin instance's parameters: the operator's defaults from
// the plugin's configuration overlaid with the watch's own (see ABI.md).
// They are fixed for the life of an instance.
type Params map[string]string

// Only returns an error naming the first key not in allowed, so a typo in a
// watch's params is INVALID_ARGUMENT instead of silently ignored.
func (p Params) Only(allowed ...string) error {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		found := false
		for _, a := range allowed {
			found = found || a == k
		}
		if !found {
			return fmt.Errorf("unknown param %q (known: %s)", k, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// Has reports whether key is set.
func (p Params) Has(key string) bool { _, ok := p[key]; return ok }

// String returns key's value, or def when it is absent.
func (p Params) String(key, def string) string {
	if v, ok := p[key]; ok {
		return v
	}
	return def
}

// Float parses key as a float, or returns def when it is absent.
func (p Params) Float(key string, def float64) (float64, error) {
	v, ok := p[key]
	if !ok {
		return def, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return 0, fmt.Errorf("param %s=%q: not a number", key, v)
	}
	return f, nil
}

// Int parses key as an integer, or returns def when it is absent.
func (p Params) Int(key string, def int64) (int64, error) {
	v, ok := p[key]
	if !ok {
		return def, nil
	}
	i, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("param %s=%q: not an integer", key, v)
	}
	return i, nil
}

// Bool parses key as a boolean (true/false/1/0), or returns def.
func (p Params) Bool(key string, def bool) (bool, error) {
	v, ok := p[key]
	if !ok {
		return def, nil
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, fmt.Errorf("param %s=%q: not true or false", key, v)
	}
	return b, nil
}

// Duration parses key as a Go duration ("250ms", "1s"), or returns def.
func (p Params) Duration(key string, def time.Duration) (time.Duration, error) {
	v, ok := p[key]
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("param %s=%q: not a duration like 500ms or 2s", key, v)
	}
	return d, nil
}

// The registered plugin. Set from init functions before the host calls in,
// then only read: a plugin instance is single-threaded.
var (
	initFn   func(Params) error
	filterFn func(*Update, Params) Verdict
	batchFn  func([]Update, Params, []Verdict)
)

// Register sets the plugin's filter: it is called once per update, in order,
// and its verdict decides the update's fate. Call it from init.
func Register(f func(u *Update, p Params) Verdict) { filterFn, batchFn = f, nil }

// RegisterBatch sets a filter that sees the whole batch at once and writes
// one verdict per update into out (pre-filled with Pass); for filters whose
// decision about one update depends on later ones in the same batch, such as
// a rate limit that keeps the latest updates.
func RegisterBatch(f func(batch []Update, p Params, out []Verdict)) { batchFn, filterFn = f, nil }

// RegisterInit sets a function run once per instance with its params, before
// any batch: validate and parse them there. Returning an error makes the
// host refuse the params (INVALID_ARGUMENT for a watch).
func RegisterInit(f func(p Params) error) { initFn = f }

// guest is the per-instance SDK state behind the exports. Owned by the
// single thread of the Wasm instance.
type guest struct {
	params   Params
	inited   bool
	dec      abi.BatchDecoder
	verdicts []Verdict
	out      []byte
	lastErr  string
}

var g guest

// errNotInitialized guards against a host that skips varwatch_init.
var errNotInitialized = errors.New("sdk: varwatch_filter called before varwatch_init")

// handleInit is varwatch_init without the pointers.
func (g *guest) handleInit(in []byte) error {
	m, err := abi.DecodeParams(in)
	if err != nil {
		return err
	}
	p := Params(m)
	if initFn != nil {
		if err := initFn(p); err != nil {
			return err
		}
	}
	g.params, g.inited = p, true
	return nil
}

// handleFilter is varwatch_filter without the pointers: batch bytes in,
// verdict bytes out (valid until the next call).
func (g *guest) handleFilter(in []byte) ([]byte, error) {
	if !g.inited {
		return nil, errNotInitialized
	}
	us, err := g.dec.View(in)
	if err != nil {
		return nil, err
	}
	if cap(g.verdicts) < len(us) {
		g.verdicts = make([]Verdict, len(us))
	}
	vs := g.verdicts[:len(us)]
	clear(vs)
	switch {
	case batchFn != nil:
		batchFn(us, g.params, vs)
	case filterFn != nil:
		for i := range us {
			vs[i] = filterFn(&us[i], g.params)
		}
	}
	// Pass and drop, the common answers, are one byte each; only a
	// replace goes through the general encoder.
	out := binary.LittleEndian.AppendUint32(g.out[:0], uint32(len(vs)))
	for i := range vs {
		if a := vs[i].Action; a != abi.Replace {
			out = append(out, byte(a))
		} else {
			out = abi.AppendVerdict(out, &vs[i])
		}
	}
	g.out = out
	return out, nil
}
