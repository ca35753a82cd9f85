package grpcapi

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

func TestBatchCut(t *testing.T) {
	small := &pb.VariableUpdate{UpdateType: "value_change"}
	big := &pb.VariableUpdate{UpdateSource: strings.Repeat("x", MaxBatchBytes/2)}
	huge := &pb.VariableUpdate{UpdateSource: strings.Repeat("x", hardBatchBytes/2)}
	tests := []struct {
		name string
		revs []int64
		ups  []*pb.VariableUpdate // default: all small
		// initial: the first this many are initial values.
		initial int
		size    int
		want    int
	}{
		{name: "fits", revs: []int64{1, 2, 3}, size: 3, want: 3},
		{name: "cut at boundary", revs: []int64{1, 2, 3, 4}, size: 3, want: 3},
		{name: "back off to keep a revision whole", revs: []int64{1, 2, 2, 3}, size: 2, want: 1},
		{name: "back off further", revs: []int64{1, 2, 2, 2, 3}, size: 3, want: 1},
		{name: "one revision larger than size is sent whole", revs: []int64{2, 2, 2, 3}, size: 2, want: 3},
		{name: "size one", revs: []int64{1, 1}, size: 1, want: 2},
		{name: "bytes cap at a boundary", revs: []int64{1, 2, 3}, ups: []*pb.VariableUpdate{big, big, big}, size: 100, want: 1},
		{name: "bytes cap keeps a revision whole", revs: []int64{1, 1, 1, 2}, ups: []*pb.VariableUpdate{big, big, big, small}, size: 100, want: 3},
		{name: "a snapshot may be cut anywhere", revs: []int64{3, 3, 3, 3}, initial: 3, size: 2, want: 2},
		{name: "hard cap splits even one revision", revs: []int64{1, 1, 1}, ups: []*pb.VariableUpdate{huge, huge, huge}, size: 100, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs := make([]engine.Event, len(tc.revs))
			ups := tc.ups
			if ups == nil {
				ups = make([]*pb.VariableUpdate, len(tc.revs))
			}
			for i, r := range tc.revs {
				evs[i].Revision = r
				if i < tc.initial {
					evs[i].Type = engine.EventInitialValue
				}
				if ups[i] == nil {
					ups[i] = small
				}
			}
			sizes := make([]int, len(ups))
			for i, up := range ups {
				sizes[i] = 3 + proto.Size(up)
			}
			if got := batchCut(evs, sizes, tc.size); got != tc.want {
				t.Fatalf("batchCut(%v, size %d) = %d, want %d", tc.revs, tc.size, got, tc.want)
			}
		})
	}
}
