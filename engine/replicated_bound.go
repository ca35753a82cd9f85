package engine

import (
	"context"
	"errors"
	"time"
)

// BoundedLog is a ReplicatedLog whose entries have a largest size (the
// NATS servers' max_payload, less a publish's headers, for cluster.Log).
// A replicated engine over one sizes its proposals to fit, so that a
// SetBatches call, or a non-atomic SetMany, of writes that each fit is
// never refused as a whole because together they do not: they are
// proposed in several entries. An atomic call, or one set, that does not
// fit alone is refused by the log as before (its *LimitError).
type BoundedLog interface {
	ReplicatedLog
	// MaxEntryBytes is the largest msg Propose takes.
	MaxEntryBytes() int
}

// proposalRoom is what encodeProposal adds to its records, over the 5
// bytes of each record's length: the proposal's own length, its version,
// its id (an engine's ids are under 40 bytes) and a tenant's quota.
const proposalRoom = 128

// proposalBudget is how many record bytes one proposal may carry (0: no
// bound), counting each record's length prefix.
func (r *replication) proposalBudget() int {
	b, ok := r.log.(BoundedLog)
	if !ok {
		return 0
	}
	return max(b.MaxEntryBytes()-proposalRoom, 1)
}

// recordCost is what rec takes of a proposal's budget.
func recordCost(rec []byte) int { return len(rec) + 5 }

// batchPart is one record of a SetBatches call: batch's sets, or a run of
// them when the batch is split.
type batchPart struct {
	batch int // index in the call's batches
	sets  int // how many of its sets
	rec   []byte
}

// splitBatches encodes the records of batches, splitting a non-atomic
// batch whose record would not fit in a proposal into runs of sets that
// do (halving: a run of one set that does not fit stays, for the log to
// refuse). budget 0 splits nothing.
func splitBatches(ctx context.Context, batches []SetManyRequest, now time.Time, budget int) []batchPart {
	parts := make([]batchPart, 0, len(batches))
	var add func(i int, b SetManyRequest)
	add = func(i int, b SetManyRequest) {
		rec := setsRecord(ctx, b, now)
		if budget == 0 || recordCost(rec) <= budget || b.Atomic || len(b.Sets) < 2 {
			parts = append(parts, batchPart{i, len(b.Sets), rec})
			return
		}
		half := len(b.Sets) / 2
		first, second := b, b
		first.Sets, second.Sets = b.Sets[:half:half], b.Sets[half:]
		add(i, first)
		add(i, second)
	}
	for i, b := range batches {
		add(i, b)
	}
	return parts
}

// mergePart adds the result of one part of a batch to the batch's result:
// parts apply in order, so their items follow each other and the last
// part's revision is the batch's. The first error of a part stays.
func mergePart(res *BatchResult, part BatchResult, first bool) {
	if first {
		*res = part
		return
	}
	res.Items = append(res.Items, part.Items...)
	res.Revision = max(res.Revision, part.Revision)
	if res.Err == nil {
		res.Err = part.Err
	}
}

// isLimit reports whether err is a limit's: the write did not apply, and
// the writes after it may go on.
func isLimit(err error) bool { return errors.As(err, new(*LimitError)) }

// refusedPart is the result of a part the log refused as a limit: the
// batch's error if it is atomic (none of it applies), else each of the
// part's sets fails on its own, as a set over a limit does in a
// non-atomic call on one server.
func refusedPart(b SetManyRequest, p batchPart, err error) BatchResult {
	if b.Atomic || len(b.Sets) == 0 {
		return BatchResult{Err: err}
	}
	items := make([]SetItemResult, p.sets)
	for i := range items {
		items[i].Err = err
	}
	return BatchResult{SetManyResult: SetManyResult{Items: items}}
}
