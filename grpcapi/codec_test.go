package grpcapi

import (
	"testing"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/protobuf/proto"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// TestProcessCodecIsLeftAlone: importing grpcapi does not replace the
// process-wide "proto" codec, which a program's other clients and servers
// (an etcd client, say) use. It did, at init.
func TestProcessCodecIsLeftAlone(t *testing.T) {
	if _, ours := encoding.GetCodecV2(grpcproto.Name).(codec); ours {
		t.Fatal(`the registered "proto" codec is grpcapi's: importing the package replaced it for the whole process`)
	}
}

// TestEncodedMessageMarshalsWithoutOurCodec: a server built without
// ServerOption still sends pre-encoded watch messages intact.
func TestEncodedMessageMarshalsWithoutOurCodec(t *testing.T) {
	want := &pb.VariableUpdate{VariableId: "1", UpdateType: "heartbeat", Revision: 42, Incarnation: "i"}
	b, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	data, err := encoding.GetCodecV2(grpcproto.Name).Marshal(&encodedMessage{b})
	if err != nil {
		t.Fatalf("gRPC's proto codec refuses an encodedMessage: %v", err)
	}
	var got pb.VariableUpdate
	if err := proto.Unmarshal(data.Materialize(), &got); err != nil || !proto.Equal(&got, want) {
		t.Fatalf("got %v (%v), want %v", &got, err, want)
	}
}
