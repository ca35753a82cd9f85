package grpcapi

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/plugins"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// BenchmarkFilteredDelivery measures what a filter chain costs a batched
// watch stream over loopback gRPC, against the unfiltered path in the
// same run; writes are in-process, 100 non-atomic sets per call:
//
//	go test -run '^$' -bench FilteredDelivery -benchtime 200000x ./grpcapi/
//
// Every filter passes every change (deadband at threshold 0 over rising
// values), so each row delivers the same updates.
func BenchmarkFilteredDelivery(b *testing.B) {
	for _, mode := range []struct {
		name    string
		filters []*pb.FilterSpec
	}{
		{"unfiltered", nil},
		{"wat-passthrough", []*pb.FilterSpec{filter("passthrough")}},
		{"go-deadband", []*pb.FilterSpec{filter("deadband", "threshold", "0")}},
		{"go-deadband-no-deadline", []*pb.FilterSpec{filter("deadband-nodeadline", "threshold", "0")}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			mgr, err := plugins.New(ctx, plugins.Config{
				Plugins: []plugins.PluginConfig{
					{Name: "passthrough", Path: builtWasm["passthrough"]},
					{Name: "deadband", Path: builtWasm["deadband"]},
					{Name: "deadband-nodeadline", Path: builtWasm["deadband"], Timeout: plugins.NoTimeout},
				},
				CacheDir: filepath.Join(pluginDir, "wazero-cache")})
			if err != nil {
				b.Fatal(err)
			}
			eng := engine.New(engine.Config{SubscriptionBuffer: 1 << 22})
			srv := New(Config{Backend: eng, Filters: mgr, FeedBuffer: 1 << 22, MemberBuffer: 1 << 22})
			gs := grpc.NewServer()
			Register(gs, srv)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = gs.Serve(lis) }()
			defer func() {
				srv.Shutdown()
				gs.Stop()
				srv.WaitFeeds()
				_ = mgr.Close(ctx)
				_ = eng.Close()
			}()
			cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			if _, _, err := eng.CreateSession(ctx, engine.CreateSessionRequest{ID: "bench"}); err != nil {
				b.Fatal(err)
			}
			const vars = 100
			for i := range vars {
				if _, err := eng.Register(ctx, engine.RegisterRequest{Session: "bench", Name: fmt.Sprintf("v%d", i), Type: engine.TypeFloat, Value: engine.Float(0)}); err != nil {
					b.Fatal(err)
				}
			}
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := pb.NewUnifiedBridgeClient(cc).WatchVariablesBatched(sctx, &pb.WatchVariablesRequest{SessionId: "bench", Filters: mode.filters})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := stream.Header(); err != nil {
				b.Fatal(err)
			}
			writes := b.N
			b.ResetTimer()
			start := time.Now()
			go func() {
				sets := make([]engine.SetRequest, vars)
				for done := 0; done < writes; done += vars {
					for i := range sets {
						sets[i] = engine.SetRequest{Variable: fmt.Sprintf("v%d", i), Value: engine.Float(float64(done + i + 1))}
					}
					if n := writes - done; n < vars {
						sets = sets[:n]
					}
					if _, err := eng.SetMany(ctx, engine.SetManyRequest{Session: "bench", Sets: sets}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
			var changes, last int64
			final := int64(vars + writes)
			for last < final {
				m, err := stream.Recv()
				if err != nil {
					b.Fatal(err)
				}
				for _, up := range m.GetUpdates() {
					if up.GetUpdateType() == "value_change" {
						changes++
						last = up.GetRevision()
					}
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			if changes != int64(writes) {
				b.Fatalf("got %d changes, want %d", changes, writes)
			}
			b.ReportMetric(float64(changes)/elapsed.Seconds(), "changes/s")
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(changes), "ns/change")
		})
	}
}
