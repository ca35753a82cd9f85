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
// cost included), one per message as WatchVariables does.
func (h *harness) grpcRaw(ctx context.Context) {
	update := &pb.VariableUpdate{VariableId: "42", UpdateType: "value_change", UpdateSource: "bench",
		Timestamp: timestamppb.Now(), OldValue: &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: 1}},
		Variable: &pb.Variable{Id: "42", Name: "v42", Type: pb.VariableType_VARIABLE_TYPE_FLOAT,
			Value: &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: 2}}, Version: 7, CreatedAt: timestamppb.Now(),
			LastUpdatedAt: timestamppb.Now(), CreateRevision: 3, ModRevision: 99, LastUpdateSource: "bench"}}
	for _, c := range []struct {
		name string
		msg  func(i int64) proto.Message
		seq  func(m proto.Message) int64
		new  func() proto.Message
	}{
		{"small", func(i int64) proto.Message { return wrapperspb.Int64(i) },
			func(m proto.Message) int64 { return m.(*wrapperspb.Int64Value).GetValue() },
			func() proto.Message { return new(wrapperspb.Int64Value) }},
		{"VariableUpdate", func(i int64) proto.Message { update.Revision = i; return update },
			func(m proto.Message) int64 { return m.(*pb.VariableUpdate).GetRevision() },
			func() proto.Message { return new(pb.VariableUpdate) }},
	} {
		r := Row{Scenario: "grpc-raw", Variant: c.name + " msgs, 1 stream", System: "grpc-go", Unit: "msgs/s", higherBetter: true,
			Note: "ceiling for one message per update"}
		h.add(rawRow(ctx, r, h.sz.duration, c.msg, c.seq, c.new))
	}
}

var rawDesc = grpc.ServiceDesc{
	ServiceName: "bench.Raw",
	HandlerType: (*any)(nil),
	Streams:     []grpc.StreamDesc{{StreamName: "Stream", ServerStreams: true}},
}

func rawRow(ctx context.Context, r Row, d time.Duration, msg func(int64) proto.Message, seq func(proto.Message) int64, newMsg func() proto.Message) Row {
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
	m.stop(&r, n)
	r.Value, r.Delivered = float64(n)/elapsed.Seconds(), n
	return r
}
