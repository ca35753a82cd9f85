package grpcapi

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// randValue returns a random value of a random type, or the zero Value.
func randValue(r *rand.Rand) engine.Value {
	str := func() string {
		return strings.Repeat("é", r.IntN(3)) + strings.Repeat("x", []int{0, 1, 127, 200, 20000}[r.IntN(5)])
	}
	switch r.IntN(9) {
	case 1:
		return engine.Float([]float64{0, -0.5, math.Inf(1), math.NaN(), 1e300}[r.IntN(5)])
	case 2:
		return engine.Integer([]int64{0, -1, math.MinInt64, 300}[r.IntN(4)])
	case 3:
		return engine.String(str())
	case 4:
		return engine.Boolean(r.IntN(2) == 0)
	case 5:
		return engine.Choice(str())
	case 6:
		return engine.Module(str())
	case 7:
		e := make([]float32, r.IntN(40))
		for i := range e {
			e[i] = r.Float32() - 0.5
		}
		return engine.Embedding(e)
	case 8:
		shape := make([]int64, r.IntN(3))
		for i := range shape {
			shape[i] = r.Int64N(300) - 1
		}
		return engine.TensorOf(engine.Tensor{Shape: shape, DType: []string{"", "float32"}[r.IntN(2)], Data: make([]byte, r.IntN(300))})
	}
	return engine.Value{}
}

func randMap(r *rand.Rand) map[string]string {
	if r.IntN(2) == 0 {
		return nil
	}
	m := map[string]string{}
	for i := range r.IntN(4) {
		m[fmt.Sprint("k", i)] = strings.Repeat("v", r.IntN(200))
	}
	return m
}

func randTime(r *rand.Rand) time.Time {
	return []time.Time{{}, time.Unix(0, 0), time.Unix(1_800_000_000, 999_999_999), time.Unix(-5, 3), time.Unix(7, 0)}[r.IntN(5)]
}

func randConstraints(r *rand.Rand) engine.Constraints {
	var c engine.Constraints
	f, n, neg := 0.0, int64(0), int64(-7)
	if r.IntN(2) == 0 {
		c.Min, c.Max = &f, &f // zero, yet present
		c.MinInteger, c.MaxInteger, c.MinLength, c.MaxLength = &n, &neg, &n, &neg
	}
	if r.IntN(2) == 0 {
		c.Pattern = "a+"
		c.Choices = []string{"", "on", "off"}
		c.AllowedModules = []string{"m"}
		c.Dimensions = r.IntN(3) - 1
		c.Shape = []int64{-1, 0, 1 << 40}
	}
	return c
}

func randEvent(r *rand.Rand) engine.Event {
	ev := engine.Event{
		Type:          engine.EventType(r.IntN(int(engine.EventSessionClosed) + 1)),
		Revision:      r.Int64N(1 << 40),
		OldValue:      randValue(r),
		Source:        strings.Repeat("s", r.IntN(3)),
		Metadata:      randMap(r),
		Time:          randTime(r),
		Coalesced:     r.Int64N(3),
		CoalescedFrom: r.Int64N(3),
		Incarnation:   strings.Repeat("i", r.IntN(2)*16),
	}
	if r.IntN(4) > 0 {
		v := randValue(r)
		c := randConstraints(r)
		ev.Variable = &engine.Variable{
			ID: fmt.Sprint(r.IntN(1000)), Name: "v", Type: v.Type(), Value: v,
			Constraints: &c, Metadata: randMap(r),
			Version: r.Int64N(5), CreateRevision: r.Int64N(5), ModRevision: r.Int64N(5),
			CreatedAt: randTime(r), UpdatedAt: randTime(r), Source: strings.Repeat("w", r.IntN(2)),
		}
	}
	return ev
}

// TestAppendUpdateMatchesProto: the hand encoder says what the generic
// conversion says, for random events of every shape (every value type,
// present zero constraints, long fields needing multi-byte lengths, no
// variable at all).
func TestAppendUpdateMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		ev := randEvent(r)
		var got pb.VariableUpdate
		if err := proto.Unmarshal(appendUpdate(nil, &ev, viewFull), &got); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if want := eventToProto(&ev); !proto.Equal(&got, want) {
			t.Fatalf("event %d:\n got %v\nwant %v", i, &got, want)
		}
	}
}

// TestSendBatchesDecodes: the messages sendBatches cuts decode as
// VariableUpdateBatch with as many updates as it says, together hold every
// update in order, and respect
// the size cap except to keep a revision whole.
func TestSendBatchesDecodes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		evs := make([]engine.Event, r.IntN(300))
		rev := int64(1)
		for i := range evs {
			evs[i] = randEvent(r)
			rev += r.Int64N(2) // repeats stand for atomic sets
			evs[i].Revision = rev
		}
		size := 1 + r.IntN(50)
		var got []*pb.VariableUpdate
		err := sendBatches(evs, size, func(msg []byte, n int) error {
			var b pb.VariableUpdateBatch
			if err := proto.Unmarshal(msg, &b); err != nil {
				return err
			}
			ups := b.GetUpdates()
			if len(ups) == 0 {
				t.Fatalf("round %d: empty message", round)
			}
			if n != len(ups) {
				t.Fatalf("round %d: send told %d updates, the message holds %d", round, n, len(ups))
			}
			// Over size only when no cut was allowed among the first
			// size+1: then they share one revision.
			if len(ups) > size && ups[0].GetRevision() != ups[size].GetRevision() {
				t.Fatalf("round %d: %d updates over size %d without a revision to keep whole", round, len(ups), size)
			}
			got = append(got, ups...)
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(got) != len(evs) {
			t.Fatalf("round %d: %d updates, want %d", round, len(got), len(evs))
		}
		for i := range evs {
			if want := eventToProto(&evs[i]); !proto.Equal(got[i], want) {
				t.Fatalf("round %d update %d:\n got %v\nwant %v", round, i, got[i], want)
			}
		}
	}
}

// TestSharedEncoding: events with a memo (engine.Memo) encode the same
// through every path, whichever path encodes them first: per-update
// messages, single-event batches (which send the memo itself) and
// multi-event batches of any cut (which copy it, or encode in place and
// leave their bytes in it).
func TestSharedEncoding(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for round := range 100 {
		evs := make([]engine.Event, 1+r.IntN(50))
		for i := range evs {
			evs[i] = randEvent(r)
			evs[i].Revision = int64(i + 1)
			if r.IntN(3) > 0 {
				evs[i].Memo = new(engine.Memo)
			}
		}
		want := make([]*pb.VariableUpdate, len(evs))
		for i := range evs {
			want[i] = eventToProto(&evs[i])
		}
		check := func(path string, i int, msg []byte, batch bool) {
			t.Helper()
			var got []*pb.VariableUpdate
			if batch {
				var b pb.VariableUpdateBatch
				if err := proto.Unmarshal(msg, &b); err != nil {
					t.Fatalf("round %d %s: %v", round, path, err)
				}
				got = b.GetUpdates()
			} else {
				var u pb.VariableUpdate
				if err := proto.Unmarshal(msg, &u); err != nil {
					t.Fatalf("round %d %s: %v", round, path, err)
				}
				got = []*pb.VariableUpdate{&u}
			}
			for j, u := range got {
				if !proto.Equal(u, want[i+j]) {
					t.Fatalf("round %d %s update %d:\n got %v\nwant %v", round, path, i+j, u, want[i+j])
				}
			}
		}
		// Four streams in a random order, each seeing all the events.
		for _, path := range r.Perm(4) {
			switch path {
			case 0: // per-update
				for i := range evs {
					check("per-update", i, unframe(framed(&evs[i], viewFull)), false)
				}
			case 1: // one event per drain
				for i := range evs {
					if err := sendBatches(evs[i:i+1], 1000, func(msg []byte, _ int) error { check("single", i, msg, true); return nil }); err != nil {
						t.Fatal(err)
					}
				}
			default: // whole drains, cut at random sizes
				at := 0
				if err := sendBatches(evs, 1+r.IntN(10), func(msg []byte, _ int) error {
					check("batched", at, msg, true)
					var b pb.VariableUpdateBatch
					_ = proto.Unmarshal(msg, &b)
					at += len(b.GetUpdates())
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}
