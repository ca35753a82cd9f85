package grpcapi

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// TestStreamsThatNeverReadStayBounded: 20 watch streams whose client never
// reads while 500 MiB of values and metadata are written. Each stream may
// hold what its subscription buffers (the byte bound) and the update its
// sender is stuck sending; the history holds its total bound. Past that the
// streams are cut off as slow consumers. Before, only the count of waiting
// updates was bounded: 20 such streams while 750 MiB were written grew the
// heap by 804 MiB.
func TestStreamsThatNeverReadStayBounded(t *testing.T) {
	const (
		streams    = 20
		subBytes   = 1 << 20
		histBytes  = 8 << 20
		valueBytes = 256 << 10
		metaBytes  = 48 << 10
	)
	written := 500 << 20
	if raceEnabled {
		written = 100 << 20
	}
	update := 2*valueBytes + 2*metaBytes + 4<<10 // one update: new and old value, metadata twice
	bound := streams*(subBytes+2*update) + histBytes + 32<<20

	h := newHarness(t, harnessOptions{engine: engine.Config{SubscriptionBytes: subBytes,
		HistoryBytes: histBytes, HistoryTotalBytes: histBytes}})
	h.createSession("s")
	h.register("s", "x", pb.VariableType_VARIABLE_TYPE_STRING, strV(""), nil)

	// The streams' client reads nothing: fixed, small flow-control
	// windows, so the server's sends block at once.
	lazy, err := grpc.NewClient(h.cc.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer lazy.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range streams {
		stream, err := pb.NewUnifiedBridgeClient(lazy).WatchVariables(ctx, &pb.WatchVariablesRequest{SessionId: "s"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Header(); err != nil {
			t.Fatal(err)
		}
	}

	heap := func() int {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int(ms.HeapAlloc)
	}
	before := heap()
	meta := map[string]string{} // three 16 KiB values: within the metadata limits
	for _, k := range []string{"a", "b", "c"} {
		meta[k] = strings.Repeat("m", metaBytes/3)
	}
	for i := 0; i*(valueBytes+metaBytes) < written; i++ {
		v := fmt.Sprintf("%08d", i) + strings.Repeat("v", valueBytes-8)
		if _, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x",
			Value: strV(v), Metadata: meta}); err != nil {
			t.Fatal(err)
		}
	}
	grown := heap() - before
	ratio := float64(grown) / float64(bound)
	t.Logf("wrote %d MiB; heap grew by %d MiB, bound %d MiB: ratio %.2f", written>>20, grown>>20, bound>>20, ratio)
	if ratio > 1 {
		t.Fatalf("heap grew by %.2f times the bound", ratio)
	}
}
