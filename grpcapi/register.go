package grpcapi

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// Register registers srv on gs together with the standard gRPC health
// service and server reflection, so that grpcurl and load balancers work
// without extra setup. It returns the health server, already reporting
// SERVING for the whole server ("") and for varwatch.v1.UnifiedBridge;
// call its Shutdown when the server begins to stop.
func Register(gs *grpc.Server, srv *Server) *health.Server {
	pb.RegisterUnifiedBridgeServer(gs, srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(pb.UnifiedBridge_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	reflection.Register(gs)
	return hs
}
