package grpcapi

import (
	"time"

	"github.com/varwatch/varwatch/engine"
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

// sendBatches sends evs (ordered by revision) as encoded
// VariableUpdateBatch messages of at most size updates and MaxBatchBytes
// bytes, cut only at revision boundaries (or inside a snapshot), so the
// changes of one atomic set always share a message. A single revision
// larger than those caps is sent whole, unless it exceeds hardBatchBytes,
// which no message may.
//
// Every update is encoded once (wire.go), into one buffer for the whole
// drain; each message is a slice of it. A batch message is the framed
// updates one after another (field 1, repeated), so no copy is needed.
// The buffer is never written again once a message from it is sent:
// gRPC may still hold it until the transport has written it.
//
// send gets each message and how many updates it carries.
func sendBatches(evs []engine.Event, size int, send func(msg []byte, updates int) error) error {
	buf, sizes := encodeBatch(evs)
	for len(evs) > 0 {
		n := batchCut(evs, sizes, size)
		msgLen := 0
		for _, sz := range sizes[:n] {
			msgLen += sz
		}
		if err := send(buf[:msgLen:msgLen], n); err != nil {
			return err
		}
		evs, sizes, buf = evs[n:], sizes[n:], buf[msgLen:]
	}
	return nil
}

// encodeBatch encodes evs as the updates field of a VariableUpdateBatch,
// and returns how many bytes each update took, framing included.
func encodeBatch(evs []engine.Event) ([]byte, []int) {
	if len(evs) == 1 { // the common case at low load: no copy at all
		b := framed(&evs[0], viewFull)
		return b, []int{len(b)}
	}
	sizes := make([]int, len(evs))
	buf := make([]byte, 0, 128*len(evs))
	for i := range evs {
		start := len(buf)
		buf = appendFramed(buf, &evs[i], viewFull)
		sizes[i] = len(buf) - start
	}
	return buf, sizes
}

// batchCut returns how many of the updates, of the given encoded sizes,
// go into the next message.
func batchCut(evs []engine.Event, sizes []int, size int) int {
	bytes, lastBoundary := 0, 0
	for i, sz := range sizes {
		if i > 0 && cuttable(evs[i-1], evs[i]) {
			lastBoundary = i
		}
		bytes += sz
		overSoft := i >= size || bytes > MaxBatchBytes
		if overSoft && lastBoundary > 0 {
			return lastBoundary
		}
		if bytes > hardBatchBytes && i > 0 {
			return i // one revision alone is too big for a message
		}
	}
	return len(sizes)
}
