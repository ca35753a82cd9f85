package client

import (
	"context"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// A node of a cluster (varwatch serve --cluster) answers reads
// linearizably by default: it asks the shared log where it ends and
// waits until it has applied that far. These call options change that,
// and tell where a write landed, through the metadata keys the server
// reads (grpcapi.MetadataPosition, grpcapi.MetadataConsistency; the
// client does not import the server):
//
//   - WritePosition on a write stores the log position it applied at,
//     from the response header varwatch-position (0 on a single server,
//     which has no log positions).
//   - AtPosition on a read makes the node wait until it has applied the
//     log up to a position first: with LocalRead, a read on any node that
//     sees a write made on another, without asking the log.
//   - LocalRead answers from what the node has applied: no round trip to
//     the log, and it works while the log is unreachable, but it may be
//     stale.
//
// They work on the calls of a Client made by New or Dial (an interceptor
// reads them); a single server ignores the read options. Watches take
// the same as WatchOptions.Position and WatchOptions.Local.
const (
	metadataPosition    = "varwatch-position"
	metadataConsistency = "varwatch-consistency"
)

// WritePosition returns a call option storing into *pos the log position
// the write applied at, or 0 when the server gave none (a single server,
// or a failed write). Use it on the unary writes (InitializeSession,
// RegisterVariable, SetVariable, SetVariables, DeleteVariable,
// CleanupSession, Heartbeat).
func WritePosition(pos *uint64) grpc.CallOption { return positionCapture{pos: pos} }

// AtPosition returns a call option making a read wait, on the node that
// serves it, until that node has applied the log up to pos (a
// WritePosition). A position the log has not reached waits until the
// call's deadline.
func AtPosition(pos uint64) grpc.CallOption { return readOption{position: pos} }

// LocalRead returns a call option asking the node for what it has
// applied, without learning where the log ends first: it may miss
// writes acknowledged elsewhere (unless AtPosition names them).
func LocalRead() grpc.CallOption { return readOption{local: true} }

type positionCapture struct {
	grpc.EmptyCallOption
	pos *uint64
}

type readOption struct {
	grpc.EmptyCallOption
	position uint64
	local    bool
}

// readContext adds the metadata of the read options among opts to ctx.
func readContext(ctx context.Context, opts []grpc.CallOption) context.Context {
	var kv []string
	for _, o := range opts {
		if r, ok := o.(readOption); ok {
			if r.position > 0 {
				kv = append(kv, metadataPosition, strconv.FormatUint(r.position, 10))
			}
			if r.local {
				kv = append(kv, metadataConsistency, "local")
			}
		}
	}
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// withReads is ctx with the metadata a watch's options ask for.
func withReads(ctx context.Context, position uint64, local bool) context.Context {
	return readContext(ctx, []grpc.CallOption{readOption{position: position, local: local}})
}

// positionOf is the log position a response header gives, or 0.
func positionOf(md metadata.MD) uint64 {
	vs := md.Get(metadataPosition)
	if len(vs) == 0 {
		return 0
	}
	pos, _ := strconv.ParseUint(vs[len(vs)-1], 10, 64)
	return pos
}

// unaryConsistency is the interceptor behind the options above.
func unaryConsistency(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx = readContext(ctx, opts)
	var captures []*uint64
	for _, o := range opts {
		if p, ok := o.(positionCapture); ok && p.pos != nil {
			captures = append(captures, p.pos)
		}
	}
	if len(captures) == 0 {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	var header metadata.MD
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Header(&header))...)
	pos := positionOf(header)
	for _, p := range captures {
		*p = pos
	}
	return err
}

// streamConsistency adds the read options to a stream's metadata (a
// WatchVariables stream opened with the stub).
func streamConsistency(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(readContext(ctx, opts), desc, cc, method, opts...)
}
