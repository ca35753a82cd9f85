package abi

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"unsafe"
)

// sampleBatch has one update of every type, with and without old values and
// metadata.
func sampleBatch() []Update {
	return []Update{
		{Kind: KindValueChange, Revision: 7, Time: 1_700_000_000_000_000_000, ID: "v1", Name: "temp", Type: TypeFloat,
			New: Float(21.5), Old: Float(21.25), Source: "sensor", Metadata: Metadata{{"unit", "C"}}},
		{Kind: KindInitialValue, Revision: 7, ID: "v2", Name: "count", Type: TypeInteger, New: Integer(-3)},
		{Kind: KindValueChange, Revision: 8, ID: "v3", Name: "label", Type: TypeString, New: String("héllo"), Old: String("")},
		{Kind: KindValueChange, Revision: 9, ID: "v4", Name: "on", Type: TypeBoolean, New: Boolean(true), Old: Boolean(false)},
		{Kind: KindRegistered, Revision: 10, ID: "v5", Name: "mode", Type: TypeChoice, New: Choice("fast")},
		{Kind: KindValueChange, Revision: 11, ID: "v6", Name: "model", Type: TypeModule, New: Module("resnet"), Old: Module("vgg")},
		{Kind: KindValueChange, Revision: 12, ID: "v7", Name: "emb", Type: TypeEmbedding,
			New: Embedding([]float32{0.5, float32(math.Inf(-1)), 3}), Old: Embedding(nil)},
		{Kind: KindDeleted, Revision: 13, ID: "v8", Name: "t", Type: TypeTensor,
			New:      TensorValue(Tensor{Shape: []int64{2, 1}, DType: "int16", Data: []byte{1, 0, 2, 0}}),
			Metadata: Metadata{{"a", "1"}, {"b", ""}}},
	}
}

func TestBatchRoundTrip(t *testing.T) {
	in := sampleBatch()
	buf := AppendBatch(nil, in)
	var d BatchDecoder
	for round := range 3 { // reuse of the decoder's memory must not corrupt
		out, err := d.Decode(buf)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(out) != len(in) {
			t.Fatalf("round %d: %d updates, want %d", round, len(out), len(in))
		}
		for i := range in {
			assertUpdateEqual(t, out[i], in[i])
		}
	}
}

func assertUpdateEqual(t *testing.T, got, want Update) {
	t.Helper()
	if got.Kind != want.Kind || got.Revision != want.Revision || got.Time != want.Time || got.ID != want.ID ||
		got.Name != want.Name || got.Type != want.Type || got.Source != want.Source {
		t.Errorf("update %s: header %+v, want %+v", want.ID, got, want)
	}
	if !got.New.Equal(want.New) || !got.Old.Equal(want.Old) {
		t.Errorf("update %s: values %v/%v, want %v/%v", want.ID, got.New, got.Old, want.New, want.Old)
	}
	if len(got.Metadata) != len(want.Metadata) || (len(want.Metadata) > 0 && !reflect.DeepEqual(got.Metadata, want.Metadata)) {
		t.Errorf("update %s: metadata %v, want %v", want.ID, got.Metadata, want.Metadata)
	}
}

func TestNewValueAtFixedOffset(t *testing.T) {
	// The WAT and C guests rely on this; ABI.md documents it.
	buf := AppendBatch(nil, []Update{{ID: "a", Type: TypeFloat, New: Float(2.5)}})
	rec := buf[4:]
	if Type(rec[NewValueOffset]) != TypeFloat || math.Float64frombits(le.Uint64(rec[NewValueOffset+1:])) != 2.5 {
		t.Fatalf("float not at record offset %d: % x", NewValueOffset, rec[:NewValueOffset+9])
	}
}

func TestVerdictRoundTrip(t *testing.T) {
	batch := sampleBatch()
	nv, ov := String("***"), String("***")
	emb := Embedding([]float32{1, 2, 3})
	in := []Verdict{
		{Action: Pass},
		{Action: Drop},
		{Action: Replace, New: &nv, Old: &ov},
		{Action: Replace, Metadata: Metadata{}},
		{Action: Replace}, // nothing replaced: encodes as pass
		{Action: Replace, Metadata: Metadata{{"k", "v"}}},
		{Action: Replace, New: &emb},
		{Action: Replace, New: &batch[7].New},
	}
	types := []Type{TypeFloat, TypeInteger, TypeString, TypeBoolean, TypeChoice, TypeModule, TypeEmbedding, TypeTensor}
	buf := AppendVerdicts(nil, in)
	out, err := DecodeVerdicts(buf, len(in), func(i int) Type { return types[i] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	in[4] = Verdict{Action: Pass}
	for i := range in {
		if !reflect.DeepEqual(out[i], in[i]) {
			t.Errorf("verdict %d: %+v, want %+v", i, out[i], in[i])
		}
	}
	if out[3].Metadata == nil {
		t.Errorf("an empty metadata replacement must decode non-nil (it clears)")
	}
}

func TestDecodeVerdictsRejects(t *testing.T) {
	str := String("x")
	bad := String(string([]byte{0xff, 0xfe}))
	good := AppendVerdicts(nil, []Verdict{{Action: Replace, New: &str}})
	cases := []struct {
		name string
		buf  []byte
		n    int
		typ  Type
	}{
		{"empty", nil, 1, TypeString},
		{"short count", []byte{1, 0}, 1, TypeString},
		{"count mismatch", AppendVerdicts(nil, []Verdict{{}, {}}), 1, TypeString},
		{"unknown action", []byte{1, 0, 0, 0, 9}, 1, TypeString},
		{"unknown flags", []byte{1, 0, 0, 0, 2, 0x80}, 1, TypeString},
		{"wrong type", good, 1, TypeFloat},
		{"truncated value", good[:len(good)-1], 1, TypeString},
		{"trailing bytes", append(append([]byte{}, good...), 0), 1, TypeString},
		{"invalid utf8", AppendVerdicts(nil, []Verdict{{Action: Replace, New: &bad}}), 1, TypeString},
		{"huge string length", []byte{1, 0, 0, 0, 2, 1, 3, 0xff, 0xff, 0xff, 0x7f}, 1, TypeString},
		{"bad tensor", AppendVerdicts(nil, []Verdict{{Action: Replace, New: &Value{Type: TypeTensor,
			Tensor: &Tensor{Shape: []int64{3}, DType: "int32", Data: []byte{1}}}}}), 1, TypeTensor},
		{"bad dtype", AppendVerdicts(nil, []Verdict{{Action: Replace, New: &Value{Type: TypeTensor,
			Tensor: &Tensor{DType: "complex", Data: []byte{}}}}}), 1, TypeTensor},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeVerdicts(tc.buf, tc.n, func(int) Type { return tc.typ }, nil)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestParamsRoundTrip(t *testing.T) {
	in := map[string]string{"threshold": "0.5", "mode": "abs", "": "empty key"}
	out, err := DecodeParams(AppendParams(nil, in))
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("params %v, %v; want %v", out, err, in)
	}
	if a, b := AppendParams(nil, in), AppendParams(nil, in); string(a) != string(b) {
		t.Fatalf("params encoding is not deterministic")
	}
}

func TestBatchDecoderSteadyStateAllocatesNothing(t *testing.T) {
	batch := []Update{
		{Kind: KindValueChange, ID: "v1", Name: "temp", Type: TypeFloat, New: Float(1), Old: Float(0),
			Source: "s", Metadata: Metadata{{"unit", "C"}}},
		{Kind: KindValueChange, ID: "v2", Name: "emb", Type: TypeEmbedding, New: Embedding([]float32{1, 2})},
	}
	buf := AppendBatch(nil, batch)
	var d BatchDecoder
	first, err := d.Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	id := unsafe.StringData(first[0].ID)
	allocs := testing.AllocsPerRun(100, func() {
		us, err := d.Decode(buf)
		if err != nil || unsafe.StringData(us[0].ID) != id {
			t.Fatalf("decode: %v, id not interned", err)
		}
	})
	if allocs != 0 {
		t.Fatalf("steady-state decode allocates %v times per batch, want 0", allocs)
	}
}
