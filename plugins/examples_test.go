package plugins

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The example plugins, each through the real host.

func exampleManager(t *testing.T, names ...string) *Manager {
	t.Helper()
	var cfgs []PluginConfig
	for _, n := range names {
		cfgs = append(cfgs, PluginConfig{Name: n, Path: examplePath(t, n)})
	}
	m, _ := newManager(t, Config{Plugins: cfgs})
	return m
}

// deadbandModel is the reference the deadband plugin must agree with.
type deadbandModel struct {
	threshold float64
	last      map[string]float64
}

func (d *deadbandModel) decide(u Update) Action {
	switch {
	case u.Kind == KindDeleted:
		delete(d.last, u.ID)
	case u.Kind == KindValueChange && u.Type == TypeFloat:
		prev, seen := d.last[u.ID]
		if seen && math.Abs(u.New.Float-prev) < d.threshold {
			return Drop
		}
		d.last[u.ID] = u.New.Float
	}
	return Pass
}

func TestDeadbandMatchesModel(t *testing.T) {
	m := exampleManager(t, "deadband")
	c := acquire(t, m, FilterSpec{Name: "deadband", Params: map[string]string{"threshold": "0.5"}})
	model := &deadbandModel{threshold: 0.5, last: map[string]float64{}}
	rng := rand.New(rand.NewPCG(1, 2))
	ids := []string{"a", "b", "c"}
	values := map[string]float64{}
	var updates []Update
	for range 2000 {
		id := ids[rng.IntN(len(ids))]
		u := change(id, values[id], values[id]+rng.NormFloat64()*0.4)
		switch r := rng.IntN(100); {
		case r < 5:
			u.Kind = KindInitialValue // a new stream's snapshot: passes, state untouched
		case r < 7:
			u.Kind = KindDeleted
		case r < 10:
			u = Update{Kind: KindValueChange, ID: id, Type: TypeString, New: String("not a float")}
		}
		values[id] = u.New.Float
		updates = append(updates, u)
	}
	passed := 0
	for len(updates) > 0 {
		n := min(len(updates), 1+rng.IntN(40))
		batch := updates[:n]
		updates = updates[n:]
		vs := mustRun(t, c, batch)
		for i, u := range batch {
			want := model.decide(u)
			if vs[i].Action != want {
				t.Fatalf("update %+v: %s, model says %s (stats %+v)", u, vs[i].Action, want, statsOf(t, m, "deadband"))
			}
			if want == Pass {
				passed++
			}
		}
	}
	if passed == 0 || passed == 2000 {
		t.Fatalf("%d of 2000 passed: the test does not exercise the threshold", passed)
	}
}

func TestRatelimit(t *testing.T) {
	m := exampleManager(t, "ratelimit")
	c := acquire(t, m, FilterSpec{Name: "ratelimit", Params: map[string]string{"rate": "2", "per": "1s"}})
	at := func(id string, ms int64) Update {
		u := change(id, 0, float64(ms))
		u.Time = 1_700_000_000_000_000_000 + ms*int64(time.Millisecond)
		return u
	}
	initial := at("a", 50)
	initial.Kind = KindInitialValue
	deleted := at("b", 1850)
	deleted.Kind = KindDeleted
	steps := []struct {
		name  string
		batch []Update
		want  string
	}{
		{"a burst keeps the latest two", []Update{at("a", 0), at("a", 100), at("a", 200), at("a", 300)}, "ddpp"},
		{"window full", []Update{at("a", 500)}, "d"},
		{"initial values always pass", []Update{initial}, "p"},
		{"variables are independent", []Update{at("b", 600), at("a", 700), at("b", 800)}, "pdp"},
		{"new window", []Update{at("a", 1000)}, "p"},
		{"new window, one slot left", []Update{at("a", 1100), at("a", 1200)}, "dp"},
		{"two windows in one batch", []Update{at("a", 1900), at("a", 2000), at("a", 2100), at("a", 2200)}, "ddpp"},
		// Without the deletion the third change would be one too many.
		{"deletion forgets", []Update{at("b", 1700), at("b", 1800), deleted, at("b", 1900)}, "pppp"},
	}
	for _, st := range steps {
		if got := actions(mustRun(t, c, st.batch)); got != st.want {
			t.Fatalf("%s: %s, want %s", st.name, got, st.want)
		}
	}
}

func TestRedact(t *testing.T) {
	m := exampleManager(t, "redact")
	parts := acquire(t, m, FilterSpec{Name: "redact", Params: map[string]string{"pattern": `\d{4}`, "replacement": "####"}})
	whole := acquire(t, m, FilterSpec{Name: "redact", Params: map[string]string{"pattern": `secret`, "whole": "true"}})
	str := func(oldS, newS string) Update {
		return Update{Kind: KindValueChange, ID: "s", Type: TypeString, New: String(newS), Old: String(oldS)}
	}
	cases := []struct {
		name       string
		c          *Chain
		in         Update
		action     Action
		newV, oldV string
	}{
		{"matching parts", parts, str("", "card 1234 5678"), Replace, "card #### ####", ""},
		{"old value too", parts, str("pin 9999", "pin 1111"), Replace, "pin ####", "pin ####"},
		{"only the old value", parts, str("pin 9999", "none"), Replace, "none", "pin ####"},
		{"no match", parts, str("a", "b"), Pass, "b", "a"},
		{"whole value", whole, str("", "my secret plan"), Replace, "***", ""},
		{"choice is not redacted", parts, Update{Kind: KindValueChange, Type: TypeChoice, New: Choice("1234")}, Pass, "1234", ""},
		{"floats pass", parts, change("f", 1234, 5678), Pass, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vs := mustRun(t, tc.c, []Update{tc.in})
			got := Apply(tc.in, vs[0])
			if vs[0].Action != tc.action || got.New.Str != tc.newV || got.Old.Str != tc.oldV {
				t.Fatalf("%s new=%q old=%q; want %s %q %q", vs[0].Action, got.New.Str, got.Old.Str, tc.action, tc.newV, tc.oldV)
			}
		})
	}
	for _, bad := range []map[string]string{{}, {"pattern": "("}, {"pattern": "x", "whole": "maybe"}} {
		if _, err := m.Acquire(context.Background(), []FilterSpec{{Name: "redact", Params: bad}}); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("params %v: err = %v, want ErrInvalidParams", bad, err)
		}
	}
}

func TestScale(t *testing.T) {
	m := exampleManager(t, "scale")
	c := acquire(t, m, FilterSpec{Name: "scale", Params: map[string]string{"a": "1.8", "b": "32", "match": "temp.*", "unit": "F"}})
	temp := change("t1", 10, 20)
	temp.Name = "temp.room"
	temp.Metadata = Metadata{{Key: "unit", Value: "C"}, {Key: "room", Value: "lab"}}
	other := change("o1", 1, 2)
	other.Name = "pressure"
	initial := Update{Kind: KindInitialValue, ID: "t2", Name: "temp.out", Type: TypeFloat, New: Float(-40)}
	integer := Update{Kind: KindValueChange, ID: "i", Name: "temp.int", Type: TypeInteger, New: Integer(5)}
	batch := []Update{temp, other, initial, integer}
	vs := mustRun(t, c, batch)
	if got := actions(vs); got != "rprp" {
		t.Fatalf("actions %s", got)
	}
	u := Apply(temp, vs[0])
	if u.New.Float != 68 || u.Old.Float != 50 {
		t.Fatalf("20C/10C became %v/%v", u.New, u.Old)
	}
	if unit, _ := u.Metadata.Get("unit"); unit != "F" || len(u.Metadata) != 2 {
		t.Fatalf("metadata %v", u.Metadata)
	}
	if u := Apply(initial, vs[2]); u.New.Float != -40 || !u.Old.IsNone() {
		t.Fatalf("initial value became %v (old %v)", u.New, u.Old)
	}
	if _, err := m.Acquire(context.Background(), []FilterSpec{{Name: "scale", Params: map[string]string{"a": "NaN"}}}); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("a=NaN: %v", err)
	}
}

func TestFiniteC(t *testing.T) {
	m := exampleManager(t, "finite")
	c := acquire(t, m, FilterSpec{Name: "finite"})
	emb := func(fs ...float32) Update {
		return Update{Kind: KindValueChange, ID: "e", Type: TypeEmbedding, New: Embedding(fs)}
	}
	batch := []Update{
		change("a", 0, 1), change("a", 1, math.NaN()), change("a", 1, math.Inf(1)), change("a", 1, math.Inf(-1)),
		emb(1, 2), emb(1, float32(math.NaN())), emb(),
		{Kind: KindValueChange, Type: TypeString, New: String("NaN")},
	}
	if got := actions(mustRun(t, c, batch)); got != "pdddpdpp" {
		t.Fatalf("actions %s", got)
	}
	_, err := m.Acquire(context.Background(), []FilterSpec{{Name: "finite", Params: map[string]string{"x": "1"}}})
	if !errors.Is(err, ErrInvalidParams) || !strings.Contains(err.Error(), "finite takes no params") {
		t.Fatalf("params: %v", err)
	}
}

// TestChainComposesInOrder runs scale and deadband in both orders: each
// order must match applying the two models one after the other.
func TestChainComposesInOrder(t *testing.T) {
	m := exampleManager(t, "scale", "deadband")
	scale := FilterSpec{Name: "scale", Params: map[string]string{"a": "10"}}
	deadband := FilterSpec{Name: "deadband", Params: map[string]string{"threshold": "5"}}
	raw := []float64{0, 0.3, 0.6, 1.0, 1.7, 1.2}
	batch := make([]Update, len(raw))
	for i, v := range raw {
		batch[i] = change("x", 0, v)
	}
	initial := change("x", 0, 0.1)
	initial.Kind = KindInitialValue
	batch = append(batch, initial) // initial values go through the chain too

	scaleThenDeadband := acquire(t, m, scale, deadband)
	deadbandThenScale := acquire(t, m, deadband, scale)
	for _, tc := range []struct {
		c    *Chain
		want func(u Update) (Action, float64)
	}{
		{scaleThenDeadband, func() func(Update) (Action, float64) {
			db := &deadbandModel{threshold: 5, last: map[string]float64{}}
			return func(u Update) (Action, float64) {
				u.New = Float(u.New.Float * 10)
				if db.decide(u) == Drop {
					return Drop, 0
				}
				return Replace, u.New.Float
			}
		}()},
		{deadbandThenScale, func() func(Update) (Action, float64) {
			db := &deadbandModel{threshold: 5, last: map[string]float64{}}
			return func(u Update) (Action, float64) {
				if db.decide(u) == Drop {
					return Drop, 0
				}
				return Replace, u.New.Float * 10
			}
		}()},
	} {
		vs := mustRun(t, tc.c, batch)
		for i, u := range batch {
			action, value := tc.want(u)
			if vs[i].Action != action || (action == Replace && vs[i].New.Float != value) {
				t.Fatalf("%s: update %d (%v): %s %v, want %s %v", tc.c.Name(), i, u.New, vs[i].Action, vs[i].New, action, value)
			}
		}
	}
	if a, b := actions(mustRun(t, scaleThenDeadband, batch[:0])), ""; a != b {
		t.Fatalf("empty batch: %q", a)
	}
}
