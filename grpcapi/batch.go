package grpcapi

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// Batch limits of WatchVariablesBatched.
const (
	// DefaultMaxBatchSize caps the updates per message when the request
	// sets no max_batch_size.
	DefaultMaxBatchSize = 1000
	// MaxBatchBytes caps a message's encoded size, well under gRPC's
	// default 4 MiB receive limit, at revision boundaries.
	MaxBatchBytes = 1 << 20
	// hardBatchBytes is where even one atomic set's updates are split
	// over several messages: past it, a client with the default limit
	// could not receive the message at all.
	hardBatchBytes = 4<<20 - 64<<10
	// MaxBatchDelay bounds max_batch_delay.
	MaxBatchDelay = 10 * time.Second
)

// cuttable reports whether a message may end between a and b: between
// revisions, and anywhere in a snapshot (initial values share the snapshot
// revision but are not an atomic set).
func cuttable(a, b engine.Event) bool {
	return a.Revision != b.Revision || a.Type == engine.EventInitialValue
}

// sendBatches sends evs (ordered by revision) as VariableUpdateBatch
// messages of at most size updates and MaxBatchBytes encoded bytes, cut
// only at revision boundaries (or inside a snapshot), so the changes of
// one atomic set always share a message. A single revision larger than those caps is sent whole,
// unless it exceeds hardBatchBytes, which no message may.
func sendBatches(evs []engine.Event, size int, send func(*pb.VariableUpdateBatch) error) error {
	ups := make([]*pb.VariableUpdate, len(evs))
	for i := range evs {
		ups[i] = eventToProto(&evs[i])
	}
	for len(ups) > 0 {
		n := batchCut(evs, ups, size)
		if err := send(&pb.VariableUpdateBatch{Updates: ups[:n]}); err != nil {
			return err
		}
		evs, ups = evs[n:], ups[n:]
	}
	return nil
}

// batchCut returns how many of ups go into the next message.
func batchCut(evs []engine.Event, ups []*pb.VariableUpdate, size int) int {
	bytes, lastBoundary := 0, 0
	for i, up := range ups {
		if i > 0 && cuttable(evs[i-1], evs[i]) {
			lastBoundary = i
		}
		bytes += proto.Size(up) + 3 // + the field tag and length
		overSoft := i >= size || bytes > MaxBatchBytes
		if overSoft && lastBoundary > 0 {
			return lastBoundary
		}
		if bytes > hardBatchBytes && i > 0 {
			return i // one revision alone is too big for a message
		}
	}
	return len(ups)
}
