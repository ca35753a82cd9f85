package grpcapi

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/varwatch/varwatch/engine"
)

// FuzzUpdateSizeBound: the engine refuses a write whose update would not
// fit in one message by its own estimate (engine.UpdateSizeBound), so the
// estimate must never be below the real encoding, whatever the sizes of
// the fields: long strings and keys whose lengths take several bytes,
// many small metadata entries (where framing dominates), big tensors.
//
// The arguments: seed drives randEvent's choices; name, source, key and
// value are stretched by the repeat counts to reach multi-byte lengths;
// entries small entries are added to both metadata maps.
//
// Run it with: go test -run '^$' -fuzz '^FuzzUpdateSizeBound$' -fuzztime 60s ./grpcapi/
func FuzzUpdateSizeBound(f *testing.F) {
	f.Add(uint64(1), "v", "src", "k", "val", uint16(0), uint16(1), uint16(0))
	f.Add(uint64(2), "name", "", "key", "x", uint16(2000), uint16(300), uint16(1))
	f.Add(uint64(3), "a", "s", "", "", uint16(5000), uint16(0), uint16(3))
	f.Add(uint64(4), "n", "s", "k", "v", uint16(0), uint16(20000), uint16(200))
	f.Fuzz(func(t *testing.T, seed uint64, name, source, key, value string, entries, repeat, valueRepeat uint16) {
		if len(name)*int(repeat)+len(value)*int(valueRepeat)+int(entries)*16 > 4<<20 {
			return
		}
		r := rand.New(rand.NewPCG(seed, 7))
		ev := randEvent(r)
		ev.Source = strings.Repeat(source, int(repeat)%64)
		big := strings.Repeat(value, int(valueRepeat))
		meta := map[string]string{strings.Repeat(key, int(repeat)%512): big}
		for i := range int(entries) {
			meta[string(rune('a'+i%26))+strings.Repeat("k", i/26)] = ""
		}
		ev.Metadata = meta
		if ev.Variable != nil {
			v := *ev.Variable
			v.Name = strings.Repeat(name, int(repeat))
			v.Metadata = meta
			v.Source = ev.Source
			ev.Variable = &v
		}
		if got, bound := len(framed(&ev, viewFull)), engine.UpdateSizeBound(ev); got > bound {
			t.Fatalf("encoded update of %d bytes, estimated at most %d (%d metadata entries)", got, bound, len(meta))
		}
	})
}

// TestUpdateSizeBoundOverRandomEvents is FuzzUpdateSizeBound's property
// over the random events of the other wire tests.
func TestUpdateSizeBoundOverRandomEvents(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for i := range 5000 {
		ev := randEvent(r)
		if got, bound := len(framed(&ev, viewFull)), engine.UpdateSizeBound(ev); got > bound {
			t.Fatalf("event %d: encoded %d bytes, estimated at most %d: %+v", i, got, bound, ev)
		}
	}
}
