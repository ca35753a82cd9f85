package abi

import (
	"encoding/json"
	"fmt"
	"testing"
)

// BenchmarkCodec measures the choice ABI.md's rationale records: the flat
// layout against encoding/json for the same batch, host encode plus guest
// decode, natively (inside Wasm both get slower by a similar factor, and a
// JSON guest also carries encoding/json's code and allocations).
func BenchmarkCodec(b *testing.B) {
	batch := make([]Update, 32)
	for i := range batch {
		batch[i] = Update{Kind: KindValueChange, Revision: int64(i), Time: 1_700_000_000_000_000_000,
			ID: fmt.Sprintf("v%03d", i), Name: fmt.Sprintf("sensor.%03d", i), Type: TypeFloat,
			New: Float(float64(i) + 0.5), Old: Float(float64(i)), Source: "writer-1",
			Metadata: Metadata{{"unit", "C"}}}
	}
	b.Run("flat", func(b *testing.B) {
		var buf []byte
		var d BatchDecoder
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendBatch(buf[:0], batch)
			if _, err := d.Decode(buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/update")
		b.ReportMetric(float64(len(buf))/float64(len(batch)), "bytes/update")
	})
	b.Run("json", func(b *testing.B) {
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			var err error
			buf, err = json.Marshal(batch)
			if err != nil {
				b.Fatal(err)
			}
			var out []Update
			if err := json.Unmarshal(buf, &out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/update")
		b.ReportMetric(float64(len(buf))/float64(len(batch)), "bytes/update")
	})
}
