package setrate

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// fake answers SetVariable, failing once fail is set, and counts the
// answers.
type fake struct {
	pb.UnifiedBridgeClient
	sets atomic.Int64
	fail atomic.Bool
}

func (f *fake) SetVariable(context.Context, *pb.SetVariableRequest, ...grpc.CallOption) (*pb.SetVariableResponse, error) {
	if f.fail.Load() {
		return nil, errors.New("down")
	}
	f.sets.Add(1)
	return &pb.SetVariableResponse{}, nil
}

func TestCompareCountsEachServersAcknowledgements(t *testing.T) {
	a, b := &fake{}, &fake{}
	r, err := Compare(a, b, 4, 3, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ta, tb := r.Totals()
	if len(r.A) != 3 || len(r.B) != 3 || ta != a.sets.Load() || tb != b.sets.Load() {
		t.Fatalf("rounds %v and %v, totals %d and %d; the servers answered %d and %d", r.A, r.B, ta, tb, a.sets.Load(), b.sets.Load())
	}
}

func TestAFailingServerEndsTheRun(t *testing.T) {
	a, b := &fake{}, &fake{}
	b.fail.Store(true)
	if _, err := Compare(a, b, 2, 2, time.Millisecond); err == nil {
		t.Fatal("Compare went on past a failing server")
	}
}

func TestRatios(t *testing.T) {
	r := Result{A: []int64{100, 200, 100}, B: []int64{50, 50, 100}}
	if got := r.Ratio(); got != 0.5 {
		t.Errorf("Ratio = %v, want 200/400", got)
	}
	if got, want := r.RoundRatios(), []float64{0.25, 0.5, 1}; !slices.Equal(got, want) {
		t.Errorf("RoundRatios = %v, want %v", got, want)
	}
}
