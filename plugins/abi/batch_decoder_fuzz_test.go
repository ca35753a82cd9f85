package abi

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzBatchDecoder feeds arbitrary batches to BatchDecoder, the guest
// SDK's decoder of the host's input (a panic there is a trapped plugin).
//
//   - It never panics, and a refusal wraps ErrMalformed.
//   - The update list is bounded by the input (each record takes at least
//     its fixed part).
//   - Round trip: what decodes re-encodes (AppendBatch) to bytes that decode
//     to the same updates and re-encode to the same bytes.
//   - Reusing the decoder for another batch gives what a fresh one gives.
//
// Run it with: go test -run '^$' -fuzz '^FuzzBatchDecoder$' -fuzztime 60s ./plugins/abi/
func FuzzBatchDecoder(f *testing.F) {
	f.Add(AppendBatch(nil, sampleBatch()))
	f.Add(AppendBatch(nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d BatchDecoder
		us, err := d.Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(us) > len(b)/(4+recordFixed) {
			t.Fatalf("%d updates from %d bytes", len(us), len(b))
		}
		enc := AppendBatch(nil, us)

		// The same decoder, after a different batch: its reused memory must
		// not leak into the result.
		if _, err := d.Decode(AppendBatch(nil, sampleBatch())); err != nil {
			t.Fatal(err)
		}
		us2, err := d.Decode(enc)
		if err != nil {
			t.Fatalf("decoding the re-encoding: %v", err)
		}
		if len(us2) != len(us) {
			t.Fatalf("%d updates after a round trip, want %d", len(us2), len(us))
		}
		if enc2 := AppendBatch(nil, us2); !bytes.Equal(enc2, enc) {
			t.Fatalf("round trip changed the encoding:\n% x\nwant\n% x", enc2, enc)
		}
	})
}
