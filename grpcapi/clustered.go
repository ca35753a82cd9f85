package grpcapi

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/varwatch/varwatch/engine"
)

// A node of a cluster (serve --cluster) answers writes once it has applied
// them from the shared log, and reads from what it has applied. Clustered
// makes its reads linearizable by default: before a read or a watch, the
// node learns where the log ends and waits until it has applied that far
// (etcd's ReadIndex). Two request metadata keys change that, and a
// response header tells where a write landed, so that the protocol needs
// no new fields:
//
//   - MetadataPosition on a response to a write: the log position it
//     applied at. On a request: wait until this node has applied that
//     far (read your writes across nodes at the cost of one local wait).
//   - MetadataConsistency "local" on a request: answer from what this
//     node has applied, without asking the log (it may be stale; it works
//     while the log is unreachable).
const (
	MetadataPosition    = "varwatch-position"
	MetadataConsistency = "varwatch-consistency"
)

// LogSync is what Clustered needs of a node's log (*cluster.Node has it).
type LogSync interface {
	// Sync waits until the node has applied every write the log
	// acknowledged before the call.
	Sync(ctx context.Context) error
	// WaitApplied waits until the node has applied the log up to pos.
	WaitApplied(ctx context.Context, pos uint64) error
}

// Clustered returns b with reads that wait for the log as described above,
// and writes that report their position.
func Clustered(b Backend, log LogSync) Backend {
	return &clustered{Backend: b, log: log}
}

type clustered struct {
	Backend
	log LogSync
}

// read waits before a read as the request's metadata asks.
func (c *clustered) read(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if ps := md.Get(MetadataPosition); len(ps) > 0 {
		pos, err := strconv.ParseUint(ps[len(ps)-1], 10, 64)
		if err != nil {
			return fmt.Errorf("%w: metadata %s %q is not a log position", engine.ErrInvalidArgument, MetadataPosition, ps[len(ps)-1])
		}
		if err := c.log.WaitApplied(ctx, pos); err != nil {
			return err
		}
	}
	switch cs := md.Get(MetadataConsistency); {
	case len(cs) == 0 || cs[len(cs)-1] == "linearizable":
	case cs[len(cs)-1] == "local":
		return nil
	default:
		return fmt.Errorf("%w: metadata %s %q: want local or linearizable", engine.ErrInvalidArgument, MetadataConsistency, cs[len(cs)-1])
	}
	if err := c.log.Sync(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %w", engine.ErrLogUnavailable, err)
	}
	return nil
}

// write runs a write with its position reported in the response header,
// and to the caller's engine.WithPosition if it asked (a write stream,
// whose header went out before its writes, answers each batch with it).
func write[R any](ctx context.Context, call func(context.Context) (R, error)) (R, error) {
	pos, ok := engine.PositionTarget(ctx)
	if !ok {
		pos = new(uint64)
		ctx = engine.WithPosition(ctx, pos)
	}
	res, err := call(ctx)
	if *pos > 0 {
		// Fails only outside a gRPC call or after the header went out
		// (a write stream's later writes): the position is a hint.
		_ = grpc.SetHeader(ctx, metadata.Pairs(MetadataPosition, strconv.FormatUint(*pos, 10)))
	}
	return res, err
}

func (c *clustered) GetSession(ctx context.Context, id string) (engine.SessionInfo, error) {
	if err := c.read(ctx); err != nil {
		return engine.SessionInfo{}, err
	}
	return c.Backend.GetSession(ctx, id)
}

func (c *clustered) ListSessions(ctx context.Context) ([]engine.SessionInfo, error) {
	if err := c.read(ctx); err != nil {
		return nil, err
	}
	return c.Backend.ListSessions(ctx)
}

func (c *clustered) Get(ctx context.Context, session, variable string) (*engine.Variable, error) {
	if err := c.read(ctx); err != nil {
		return nil, err
	}
	return c.Backend.Get(ctx, session, variable)
}

func (c *clustered) GetMany(ctx context.Context, session string, variables []string) (engine.GetManyResult, error) {
	if err := c.read(ctx); err != nil {
		return engine.GetManyResult{}, err
	}
	return c.Backend.GetMany(ctx, session, variables)
}

func (c *clustered) List(ctx context.Context, session, pattern string) (engine.ListResult, error) {
	if err := c.read(ctx); err != nil {
		return engine.ListResult{}, err
	}
	return c.Backend.List(ctx, session, pattern)
}

// Watch waits like a read, so that a watch resuming on this node from a
// revision another node served finds that revision applied here.
func (c *clustered) Watch(ctx context.Context, req engine.WatchRequest) (*engine.Subscription, error) {
	if err := c.read(ctx); err != nil {
		return nil, err
	}
	return c.Backend.Watch(ctx, req)
}

func (c *clustered) CreateSession(ctx context.Context, req engine.CreateSessionRequest) (engine.SessionInfo, bool, error) {
	type created struct {
		info engine.SessionInfo
		ok   bool
	}
	r, err := write(ctx, func(ctx context.Context) (created, error) {
		info, ok, err := c.Backend.CreateSession(ctx, req)
		return created{info, ok}, err
	})
	return r.info, r.ok, err
}

func (c *clustered) CloseSession(ctx context.Context, id string) (int, error) {
	return write(ctx, func(ctx context.Context) (int, error) { return c.Backend.CloseSession(ctx, id) })
}

func (c *clustered) Heartbeat(ctx context.Context, id string) (engine.SessionInfo, error) {
	return write(ctx, func(ctx context.Context) (engine.SessionInfo, error) { return c.Backend.Heartbeat(ctx, id) })
}

func (c *clustered) Register(ctx context.Context, req engine.RegisterRequest) (engine.SetResult, error) {
	return write(ctx, func(ctx context.Context) (engine.SetResult, error) { return c.Backend.Register(ctx, req) })
}

func (c *clustered) Set(ctx context.Context, req engine.SetRequest) (engine.SetResult, error) {
	return write(ctx, func(ctx context.Context) (engine.SetResult, error) { return c.Backend.Set(ctx, req) })
}

func (c *clustered) SetMany(ctx context.Context, req engine.SetManyRequest) (engine.SetManyResult, error) {
	return write(ctx, func(ctx context.Context) (engine.SetManyResult, error) { return c.Backend.SetMany(ctx, req) })
}

func (c *clustered) SetBatches(ctx context.Context, batches []engine.SetManyRequest) []engine.BatchResult {
	res, _ := write(ctx, func(ctx context.Context) ([]engine.BatchResult, error) {
		return c.Backend.SetBatches(ctx, batches), nil
	})
	return res
}

func (c *clustered) Delete(ctx context.Context, session, variable string) (int64, error) {
	return write(ctx, func(ctx context.Context) (int64, error) { return c.Backend.Delete(ctx, session, variable) })
}
