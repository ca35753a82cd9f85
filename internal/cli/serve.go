package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi"
)

func serveCommand() *command {
	return &command{
		name:    "serve",
		summary: "run the varwatch server",
		doc: `Runs the server: the engine behind the gRPC API (service
varwatch.v1.UnifiedBridge), the standard gRPC health service (SERVING while
up) and server reflection, so grpcurl works without .proto files.

It logs "listening" with the address once it accepts connections. On
SIGINT or SIGTERM it stops accepting, ends watch streams with UNAVAILABLE
naming the revision to resume from, lets unary calls in flight finish for
up to --shutdown-timeout, then closes the engine.

Heartbeat intervals below 50ms are raised to 50ms.`,
		nargs: exactly(0),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			listen := fs.String("listen", DefaultServer, "`address` to listen on (port 0 picks a free port)")
			level := fs.String("log-level", "info", "log `level`: trace, debug, info, warn or error")
			logJSON := fs.Bool("log-json", false, "log one JSON object per line")
			heartbeat := fs.Duration("heartbeat-interval", grpcapi.DefaultHeartbeatInterval, "default watch heartbeat `interval` (a watch may ask for another)")
			ttl := fs.Duration("session-ttl", time.Hour, "`TTL` of sessions created without one")
			buffer := fs.Int("subscription-buffer", 65536, "updates that may wait for one watch stream before it is cut off (RESOURCE_EXHAUSTED)")
			shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "how long to let calls in flight finish on shutdown")
			return func([]string) error {
				lvl := hclog.LevelFromString(*level)
				if lvl == hclog.NoLevel {
					return usagef("unknown --log-level %q (want trace, debug, info, warn or error)", *level)
				}
				switch {
				case *heartbeat <= 0:
					return usagef("--heartbeat-interval must be positive")
				case *ttl <= 0:
					return usagef("--session-ttl must be positive")
				case *buffer <= 0:
					return usagef("--subscription-buffer must be positive")
				case *shutdown < 0:
					return usagef("--shutdown-timeout must not be negative")
				}
				log := hclog.New(&hclog.LoggerOptions{
					Name:       "varwatch",
					Level:      lvl,
					Output:     e.stderr,
					JSONFormat: *logJSON,
				})
				return serve(e.ctx, log, serveConfig{
					listen:    *listen,
					heartbeat: *heartbeat,
					engine:    engine.Config{SessionTTL: *ttl, SubscriptionBuffer: *buffer},
					shutdown:  *shutdown,
				})
			}
		},
	}
}

type serveConfig struct {
	listen    string
	heartbeat time.Duration
	engine    engine.Config
	shutdown  time.Duration
}

// serve runs the server until ctx ends, then shuts it down in order:
// health NOT_SERVING, no new calls, watch streams ended, calls in flight
// given cfg.shutdown to finish (then cut), engine closed.
func serve(ctx context.Context, log hclog.Logger, cfg serveConfig) error {
	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.listen, err)
	}
	eng := engine.New(cfg.engine)
	defer eng.Close()
	api := grpcapi.New(grpcapi.Config{Backend: eng, Logger: log.Named("grpc"), HeartbeatInterval: cfg.heartbeat})
	gs := grpc.NewServer()
	health := grpcapi.Register(gs, api)

	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	log.Info("listening", "addr", lis.Addr().String(),
		"heartbeat_interval", cfg.heartbeat, "session_ttl", cfg.engine.SessionTTL,
		"subscription_buffer", cfg.engine.SubscriptionBuffer)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down", "timeout", cfg.shutdown)
	health.Shutdown()
	api.Shutdown()
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(cfg.shutdown)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		log.Warn("calls still in flight after the shutdown timeout; cutting them off")
		gs.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		log.Warn("serve ended with an error", "error", err)
	}
	log.Info("stopped")
	return nil
}
