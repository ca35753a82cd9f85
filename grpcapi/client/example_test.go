package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// A watch without initial values starts where the server registers it:
// wait for that with Established before writing, and the write is
// certain to come out of Next.
func ExampleWatch_Established() {
	ctx := context.Background()
	c, err := client.New("127.0.0.1:50051")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	w := c.Watch(ctx, &pb.WatchVariablesRequest{SessionId: "demo", VariableIdentifiers: []string{"temperature"}},
		client.WatchOptions{})
	defer w.Close()
	if err := w.Established(ctx); err != nil {
		log.Fatal(err) // NOT_FOUND for a session that does not exist, ...
	}
	if _, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "demo", VariableIdentifier: "temperature",
		Value: &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: 22.5}}}); err != nil {
		log.Fatal(err)
	}
	up, err := w.Next()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(up.GetUpdateType(), up.GetVariable().GetName(), up.GetRevision())
}

// Read your own write on another node of a cluster, from what that node
// has applied: the write's position makes the local read wait for it.
func ExampleWritePosition() {
	ctx := context.Background()
	nodeA, err := client.New("127.0.0.1:50051")
	if err != nil {
		log.Fatal(err)
	}
	defer nodeA.Close()
	nodeB, err := client.New("127.0.0.1:50052")
	if err != nil {
		log.Fatal(err)
	}
	defer nodeB.Close()
	var pos uint64
	if _, err := nodeA.SetVariable(ctx, &pb.SetVariableRequest{SessionId: "demo", VariableIdentifier: "temperature",
		Value: &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: 22.5}}}, client.WritePosition(&pos)); err != nil {
		log.Fatal(err)
	}
	v, err := nodeB.GetVariable(ctx, &pb.GetVariableRequest{SessionId: "demo", VariableIdentifier: "temperature"},
		client.AtPosition(pos), client.LocalRead())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.GetVariable().GetValue().GetFloatValue())
}
