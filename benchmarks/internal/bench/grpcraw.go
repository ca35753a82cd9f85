package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// grpc-raw: the ceiling grpc-go puts on a server stream here, with nothing
// of varwatch in the way: a handler that sends messages in a loop as fast
// as Send returns, one stream over loopback. "small" is an 8-byte message;
// "VariableUpdate" a typical float change as varwatch sends it (marshal
// cost included), one per message as WatchVariables does; and a
// VariableUpdateBatch of 1000 such updates, as WatchVariablesBatched sends
// under load, in updates/s: the ceiling protobuf itself puts on batched
// delivery (both ends decode or encode every update).
func (h *harness) grpcRaw(ctx context.Context) {
	update := &pb.VariableUpdate{VariableId: "42", UpdateType: "value_change", UpdateSource: "bench",
		Timestamp: timestamppb.Now(), OldValue: &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: 1}},
		Variable: &pb.Variable{Id: "42", Name: "v42", Type: pb.VariableType_VARIABLE_TYPE_FLOAT,
			Value: &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: 2}}, Version: 7, CreatedAt: timestamppb.Now(),
			LastUpdatedAt: timestamppb.Now(), CreateRevision: 3, ModRevision: 99, LastUpdateSource: "bench"}}
	batch := &pb.VariableUpdateBatch{}
	for range 1000 {
		batch.Updates = append(batch.Updates, proto.Clone(update).(*pb.VariableUpdate))
	}
	for _, c := range []struct {
		name string
		per  int64 // updates per message
		msg  func(i int64) proto.Message
		seq  func(m proto.Message) int64
		new  func() proto.Message
	}{
		{"small", 1, func(i int64) proto.Message { return wrapperspb.Int64(i) },
			func(m proto.Message) int64 { return m.(*wrapperspb.Int64Value).GetValue() },
			func() proto.Message { return new(wrapperspb.Int64Value) }},
		{"VariableUpdate", 1, func(i int64) proto.Message { update.Revision = i; return update },
			func(m proto.Message) int64 { return m.(*pb.VariableUpdate).GetRevision() },
			func() proto.Message { return new(pb.VariableUpdate) }},
		{"VariableUpdateBatch(1000)", 1000, func(i int64) proto.Message { batch.Updates[0].Revision = i; return batch },
			func(m proto.Message) int64 { return m.(*pb.VariableUpdateBatch).GetUpdates()[0].GetRevision() },
			func() proto.Message { return new(pb.VariableUpdateBatch) }},
	} {
		r := Row{Scenario: "grpc-raw", Variant: c.name + " msgs, 1 stream", System: "grpc-go", Unit: "msgs/s", higherBetter: true,
			Note: "ceiling for one message per update"}
		if c.per > 1 {
			r.Unit, r.Note = "updates/s", "ceiling of protobuf for batched delivery"
		}
		h.add(rawRow(ctx, r, h.sz.duration, c.per, c.msg, c.seq, c.new))
	}
}

var rawDesc = grpc.ServiceDesc{
	ServiceName: "bench.Raw",
	HandlerType: (*any)(nil),
	Streams:     []grpc.StreamDesc{{StreamName: "Stream", ServerStreams: true}},
}

func rawRow(ctx context.Context, r Row, d time.Duration, per int64, msg func(int64) proto.Message, seq func(proto.Message) int64, newMsg func() proto.Message) Row {
	desc := rawDesc
	desc.Streams = []grpc.StreamDesc{{StreamName: "Stream", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
		if err := ss.RecvMsg(new(wrapperspb.Int64Value)); err != nil {
			return err
		}
		for i := int64(1); ; i++ {
			if err := ss.SendMsg(msg(i)); err != nil {
				return err
			}
		}
	}}}
	gs := grpc.NewServer()
	gs.RegisterService(&desc, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return failRow(r, err)
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	cc, err := dial(lis.Addr().String())
	if err != nil {
		return failRow(r, err)
	}
	defer cc.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := cc.NewStream(sctx, &desc.Streams[0], "/bench.Raw/Stream")
	if err != nil {
		return failRow(r, err)
	}
	if err := st.SendMsg(wrapperspb.Int64(0)); err != nil {
		return failRow(r, err)
	}
	if err := st.CloseSend(); err != nil {
		return failRow(r, err)
	}
	m := startMeter()
	deadline := m.start.Add(d)
	var n int64
	in := newMsg()
	for {
		if n%256 == 0 && time.Now().After(deadline) {
			break
		}
		if err := st.RecvMsg(in); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream ended early")
			}
			return failRow(r, err)
		}
		n++
		if got := seq(in); got != n {
			return failRow(r, fmt.Errorf("message %d carries sequence %d", n, got))
		}
	}
	elapsed := time.Since(m.start)
	m.stop(&r, n*per)
	r.Value, r.Delivered = float64(n*per)/elapsed.Seconds(), n*per
	return r
}
