package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fakeGroup replays canned responses, then ends.
type fakeGroup struct{ resps [][]groupEvent }

func (f *fakeGroup) recv(buf []groupEvent) ([]groupEvent, error) {
	if len(f.resps) == 0 {
		return nil, errors.New("end of script")
	}
	r := f.resps[0]
	f.resps = f.resps[1:]
	return append(buf[:0], r...), nil
}

func (f *fakeGroup) close() {}

// TestReadGroupDispatch: a shared event reaches exactly the members it
// names, in order, and a wrong id fails the whole group.
func TestReadGroupDispatch(t *testing.T) {
	ev := func(key int, val, rev int64, to ...int64) groupEvent {
		return groupEvent{event: event{key: key, val: val, rev: rev}, to: to}
	}
	tests := []struct {
		name     string
		resps    [][]groupEvent
		progress []int64 // per member (members 3 and 7 of the row)
		wantErr  []string
	}{
		{name: "shared and own events",
			resps:    [][]groupEvent{{ev(0, 1, 1, 1, 2), ev(1, 1, 2, 2)}, {ev(0, 2, 3, 1, 2)}},
			progress: []int64{2, 3}},
		{name: "a member missing a shared event is caught",
			resps:    [][]groupEvent{{ev(0, 1, 1, 2)}, {ev(0, 2, 2, 1, 2)}},
			progress: []int64{0, 2}, wantErr: []string{"lost 1 writes", ""}},
		{name: "unknown watch id",
			resps:    [][]groupEvent{{ev(0, 1, 1, 3)}},
			progress: []int64{0, 0}, wantErr: []string{"unknown watch id 3", "unknown watch id 3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkers := make([]*checker, 8)
			for i := range checkers {
				checkers[i] = newChecker(counterScheme(2), false, true)
			}
			members := []int{3, 7}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			readGroup(ctx, &fakeGroup{resps: tc.resps}, members, checkers, streamOpts{})
			for j, m := range members {
				c := checkers[m]
				if got := c.progress.Load(); got != tc.progress[j] {
					t.Errorf("member %d: progress %d, want %d", j, got, tc.progress[j])
				}
				want := "stream ended: end of script"
				if tc.wantErr != nil && tc.wantErr[j] != "" {
					want = tc.wantErr[j]
				}
				if err := c.failed(); err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("member %d: error %v, want one containing %q", j, err, want)
				}
			}
			for i, c := range checkers {
				if i != 3 && i != 7 && (c.progress.Load() != 0 || c.failed() != nil) {
					t.Errorf("checker %d of no member was touched", i)
				}
			}
		})
	}
}
