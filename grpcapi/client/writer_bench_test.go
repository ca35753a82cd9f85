package client_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// BenchmarkWriter measures one Writer's acknowledged writes over
// loopback to an in-process server, no watchers: the write path alone.
//
//	go test -run '^$' -bench Writer ./grpcapi/client
func BenchmarkWriter(b *testing.B) {
	addr, _, _ := serveAt(b, "127.0.0.1:0", engine.Config{})
	c, err := client.New(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		b.Fatal(err)
	}
	w, err := c.Writer(ctx, "s", client.WriterOptions{Upsert: true})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("v%d", i)
	}
	b.ReportAllocs()
	var last *client.Pending
	for i := 0; b.Loop(); i++ {
		last = w.Set(names[i%len(names)], &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: float64(i)}})
	}
	if err := w.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := last.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
