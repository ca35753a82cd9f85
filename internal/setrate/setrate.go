// Package setrate measures what two varwatch servers acknowledge when
// writers set variables over gRPC as fast as each answers, the way a
// noisy machine allows: the same writers take turns on the servers, a
// round each, in alternating order, so load that comes and goes hits both
// alike. The durability benchmarks compare an in-memory server with a
// durable one this way (journal, in process; cmd/varwatch, as processes).
package setrate

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// Session is the session the writers' variables are in.
const Session = "bench"

// Prepare creates Session on c and one integer variable per writer.
func Prepare(ctx context.Context, c pb.UnifiedBridgeClient, writers int) error {
	if _, err := c.InitializeSession(ctx, &pb.InitializeSessionRequest{SessionId: Session}); err != nil {
		return err
	}
	for i := range writers {
		if _, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: Session, Name: name(i),
			Type: pb.VariableType_VARIABLE_TYPE_INTEGER, InitialValue: &pb.Value{Kind: &pb.Value_IntegerValue{}}}); err != nil {
			return err
		}
	}
	return nil
}

func name(writer int) string { return "v" + strconv.Itoa(writer) }

// For has writers each set its own variable with SetVariable, one call
// at a time, for d, and returns how many sets c acknowledged.
func For(c pb.UnifiedBridgeClient, writers int, d time.Duration) (int64, error) {
	var stop atomic.Bool
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	var acked atomic.Int64
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for n := int64(1); !stop.Load(); n++ {
				if _, err := c.SetVariable(context.Background(), &pb.SetVariableRequest{SessionId: Session, VariableIdentifier: name(i),
					Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: n}}}); err != nil {
					errs <- fmt.Errorf("writer %d: %w", i, err)
					return
				}
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	return acked.Load(), <-errs
}

// Result is what each server acknowledged, round by round.
type Result struct {
	A, B []int64
}

// Compare runs rounds rounds of d on each of a and b, a first in even
// rounds and second in odd ones.
func Compare(a, b pb.UnifiedBridgeClient, writers, rounds int, d time.Duration) (Result, error) {
	var r Result
	for i := range rounds {
		first, second := a, b
		if i%2 == 1 {
			first, second = b, a
		}
		n1, err := For(first, writers, d)
		if err != nil {
			return r, err
		}
		n2, err := For(second, writers, d)
		if err != nil {
			return r, err
		}
		if i%2 == 1 {
			n1, n2 = n2, n1
		}
		r.A, r.B = append(r.A, n1), append(r.B, n2)
	}
	return r, nil
}

// Ratio is what B acknowledged over what A did, in total.
func (r Result) Ratio() float64 { return float64(sum(r.B)) / float64(sum(r.A)) }

// RoundRatios are the rounds' B/A ratios, sorted: their spread says how
// noisy the run was.
func (r Result) RoundRatios() []float64 {
	var out []float64
	for i := range r.A {
		out = append(out, float64(r.B[i])/float64(r.A[i]))
	}
	slices.Sort(out)
	return out
}

// Report reports the run on b as metrics: each server's sets/s (named
// nameA and nameB), the ratio of the totals and the median, worst and
// best round's ratio.
func (r Result) Report(b interface{ ReportMetric(float64, string) }, nameA, nameB string, d time.Duration) {
	per := d.Seconds() * float64(len(r.A))
	b.ReportMetric(float64(sum(r.A))/per, nameA+"-sets/s")
	b.ReportMetric(float64(sum(r.B))/per, nameB+"-sets/s")
	b.ReportMetric(r.Ratio(), "ratio")
	rr := r.RoundRatios()
	b.ReportMetric(rr[len(rr)/2], "median-round-ratio")
	b.ReportMetric(rr[0], "worst-round-ratio")
	b.ReportMetric(rr[len(rr)-1], "best-round-ratio")
}

// Totals are what each server acknowledged over all the rounds.
func (r Result) Totals() (a, b int64) { return sum(r.A), sum(r.B) }

func sum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}
