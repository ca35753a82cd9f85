package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

func fv(f float64) *pb.Value { return &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: f}} }

// A Writer's writes are answered in order with increasing revisions, a
// bad one fails alone with a typed error, Flush waits for all and Close
// ends cleanly; a tiny window and batch hold the producer back without
// losing anything.
func TestWriterOrderedAcks(t *testing.T) {
	addr := startServer(t, engine.Config{})
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	w, err := c.Writer(ctx, "s", client.WriterOptions{Window: 2, MaxBatch: 3, Upsert: true})
	if err != nil {
		t.Fatal(err)
	}
	var ps []*client.Pending
	for i := range 200 {
		ps = append(ps, w.Set("x", fv(float64(i))))
	}
	bad := w.Set("x", &pb.Value{Kind: &pb.Value_StringValue{StringValue: "not a float"}})
	after := w.Set("x", fv(1000))
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	last := int64(0)
	for i, p := range ps {
		r, err := p.Wait(ctx)
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if r.Revision <= last || r.Version != int64(i+1) || r.Variable != nil {
			t.Fatalf("write %d: %v after revision %d", i, r, last)
		}
		last = r.Revision
	}
	var we *client.WriteError
	if _, err := bad.Wait(ctx); !errors.As(err, &we) || we.Code != codes.InvalidArgument || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad write: %v", err)
	}
	if r, err := after.Wait(ctx); err != nil || r.Version != 201 {
		t.Fatalf("write after the bad one: %v %v", r, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Set("x", fv(1)).Wait(ctx); !errors.Is(err, client.ErrWriterClosed) {
		t.Fatalf("set after close: %v", err)
	}
}

// A Writer to a session that does not exist fails its writes with the
// stream's NOT_FOUND.
func TestWriterUnknownSession(t *testing.T) {
	addr := startServer(t, engine.Config{})
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := c.Writer(ctx, "nope", client.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Set("x", fv(1)).Wait(ctx)
	var se *client.StreamError
	if !errors.As(err, &se) || status.Code(err) != codes.NotFound {
		t.Fatalf("write: %v", err)
	}
	if err := w.Close(); status.Code(err) != codes.NotFound {
		t.Fatalf("close: %v", err)
	}
}

// Flush on a Writer with nothing queued, open or closed, returns at once
// without an error.
func TestWriterFlushIdle(t *testing.T) {
	addr := startServer(t, engine.Config{})
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: "s"}); err != nil {
		t.Fatal(err)
	}
	w, err := c.Writer(ctx, "s", client.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush after close: %v", err)
	}
}
