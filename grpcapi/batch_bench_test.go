package grpcapi

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// benchEvents is n float value changes at consecutive revisions, as a
// busy session hands a batched stream.
func benchEvents(n int) []engine.Event {
	now := time.Now()
	evs := make([]engine.Event, n)
	for i := range evs {
		evs[i] = engine.Event{Type: engine.EventValueChange, Revision: int64(1000 + i), Source: "bench", Time: now,
			OldValue: engine.Float(float64(i)),
			Variable: &engine.Variable{ID: fmt.Sprint(i % 100), Name: fmt.Sprintf("v%d", i%100), Type: engine.TypeFloat,
				Value: engine.Float(float64(i + 1)), Version: int64(i + 2), CreateRevision: 1, ModRevision: int64(1000 + i),
				CreatedAt: now, UpdatedAt: now, Source: "bench"}}
	}
	return evs
}

// BenchmarkSendBatches measures a batched stream's encode path for one
// drain of n events, into the bytes gRPC sends: "wire" is sendBatches
// (the hand encoder of wire.go, cut by batchCut); "generic", the baseline
// in the same run, is what it replaced: eventToProto for each event, then
// proto.Marshal of each message as grpc-go's codec would.
//
//	go test -run '^$' -bench SendBatches -benchmem ./grpcapi
func BenchmarkSendBatches(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		evs := benchEvents(n)
		b.Run(fmt.Sprintf("events=%d/wire", n), func(b *testing.B) {
			bytes := 0
			send := func(msg []byte, _ int) error { bytes += len(msg); return nil }
			b.ReportAllocs()
			for b.Loop() {
				if err := sendBatches(evs, DefaultMaxBatchSize, send); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/update")
			b.ReportMetric(float64(bytes)/float64(b.N*n), "bytes/update")
		})
		b.Run(fmt.Sprintf("events=%d/generic", n), func(b *testing.B) {
			bytes := 0
			b.ReportAllocs()
			for b.Loop() {
				ups := make([]*pb.VariableUpdate, len(evs))
				for i := range evs {
					ups[i] = eventToProto(&evs[i])
				}
				buf, err := proto.Marshal(&pb.VariableUpdateBatch{Updates: ups})
				if err != nil {
					b.Fatal(err)
				}
				bytes += len(buf)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/update")
			b.ReportMetric(float64(bytes)/float64(b.N*n), "bytes/update")
		})
	}
}

// BenchmarkFanoutEncode measures what 100 streams pay to encode one change
// each of them sends alone (the fan-out case): "memo" with the change's
// engine.Memo, as the loop publishes a change with several watchers, so
// the first stream encodes and the rest reuse; "none" without, each
// stream encoding its own, as before the memo.
//
//	go test -run '^$' -bench FanoutEncode -benchmem ./grpcapi
func BenchmarkFanoutEncode(b *testing.B) {
	const streams = 100
	for _, memo := range []bool{true, false} {
		name := map[bool]string{true: "memo", false: "none"}[memo]
		b.Run(name, func(b *testing.B) {
			evs := benchEvents(1)
			b.ReportAllocs()
			for b.Loop() {
				if memo {
					evs[0].Memo = new(engine.Memo)
				}
				for range streams {
					if err := sendBatches(evs, DefaultMaxBatchSize, func([]byte, int) error { return nil }); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*streams), "ns/stream")
		})
	}
}
