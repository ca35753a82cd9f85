package sdk

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/varwatch/varwatch/plugins/abi"
)

// The SDK's logic runs natively here; the exports that wrap it are
// exercised through wazero by the plugins package's tests.

func TestGuestRoundTrip(t *testing.T) {
	defer func() { initFn, filterFn, batchFn = nil, nil, nil }()
	var limit float64
	RegisterInit(func(p Params) error {
		if err := p.Only("limit"); err != nil {
			return err
		}
		var err error
		limit, err = p.Float("limit", 10)
		return err
	})
	Register(func(u *Update, _ Params) Verdict {
		f, ok := u.NewFloat()
		switch {
		case !ok:
			return Pass()
		case f > limit:
			return Drop()
		case f < 0:
			return ReplaceValue(Float(0)).WithMetadata(Metadata{{Key: "clamped", Value: "true"}})
		}
		return Pass()
	})

	var g guest
	if _, err := g.handleFilter(abi.AppendBatch(nil, nil)); !errors.Is(err, errNotInitialized) {
		t.Fatalf("filter before init: %v", err)
	}
	if err := g.handleInit(abi.AppendParams(nil, map[string]string{"limt": "1"})); err == nil || !strings.Contains(err.Error(), `unknown param "limt"`) {
		t.Fatalf("init with a typo: %v", err)
	}
	if err := g.handleInit(abi.AppendParams(nil, map[string]string{"limit": "5"})); err != nil {
		t.Fatal(err)
	}
	batch := []Fields{
		{Type: TypeFloat, New: Float(1)},
		{Type: TypeFloat, New: Float(6)},
		{Type: TypeFloat, New: Float(-1)},
		{Type: TypeString, New: String("x")},
	}
	out, err := g.handleFilter(abi.AppendBatch(nil, batch))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := abi.DecodeVerdicts(out, len(batch), func(i int) Type { return batch[i].Type }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if vs[0].Action != abi.Pass || vs[1].Action != abi.Drop || vs[2].Action != abi.Replace || vs[3].Action != abi.Pass {
		t.Fatalf("verdicts %+v", vs)
	}
	if vs[2].New.Float != 0 || vs[2].Metadata[0].Key != "clamped" {
		t.Fatalf("replacement %+v", vs[2])
	}
	if _, err := g.handleFilter([]byte{9, 0, 0, 0}); !errors.Is(err, abi.ErrMalformed) {
		t.Fatalf("garbage batch: %v", err)
	}
}

func TestRegisterBatchSeesWholeBatch(t *testing.T) {
	defer func() { initFn, filterFn, batchFn = nil, nil, nil }()
	RegisterBatch(func(b []Update, _ Params, out []Verdict) {
		for i := range out[:len(out)-1] { // keep only the last
			out[i] = Drop()
		}
	})
	var g guest
	if err := g.handleInit(abi.AppendParams(nil, nil)); err != nil {
		t.Fatal(err)
	}
	batch := make([]Fields, 3)
	out, _ := g.handleFilter(abi.AppendBatch(nil, batch))
	vs, err := abi.DecodeVerdicts(out, 3, func(int) Type { return TypeNone }, nil)
	if err != nil || vs[0].Action != abi.Drop || vs[1].Action != abi.Drop || vs[2].Action != abi.Pass {
		t.Fatalf("verdicts %+v, %v", vs, err)
	}
}

func TestParams(t *testing.T) {
	p := Params{"f": " 1.5", "i": "7", "b": "true", "d": "250ms", "s": "x", "bad": "?"}
	if v, err := p.Float("f", 0); v != 1.5 || err != nil {
		t.Errorf("Float: %v %v", v, err)
	}
	if v, err := p.Int("i", 0); v != 7 || err != nil {
		t.Errorf("Int: %v %v", v, err)
	}
	if v, err := p.Bool("b", false); !v || err != nil {
		t.Errorf("Bool: %v %v", v, err)
	}
	if v, err := p.Duration("d", 0); v != 250*time.Millisecond || err != nil {
		t.Errorf("Duration: %v %v", v, err)
	}
	if v, err := p.Float("missing", 3); v != 3 || err != nil {
		t.Errorf("default: %v %v", v, err)
	}
	for name, f := range map[string]func() error{
		"Float":    func() error { _, err := p.Float("bad", 0); return err },
		"Int":      func() error { _, err := p.Int("bad", 0); return err },
		"Bool":     func() error { _, err := p.Bool("bad", false); return err },
		"Duration": func() error { _, err := p.Duration("bad", 0); return err },
	} {
		if err := f(); err == nil || !strings.Contains(err.Error(), "bad") {
			t.Errorf("%s of a bad value: %v", name, err)
		}
	}
	if p.String("s", "") != "x" || p.String("none", "d") != "d" || !p.Has("s") || p.Has("none") {
		t.Error("String/Has")
	}
	if err := p.Only("f", "i", "b", "d", "s", "bad"); err != nil {
		t.Error(err)
	}
}
