package grpcapi

import (
	"runtime"
	"testing"
	"time"
)

// A server is hot when the last whole window held more than half the
// responses its cores afford, and cools once a window passes quiet.
func TestSendRateHot(t *testing.T) {
	var r sendRate
	t0 := time.Unix(1_700_000_000, 0).Truncate(paceWindow)
	half := budget() * int64(paceWindow) / int64(time.Second) / 2
	r.sent(int(half), t0)
	if r.hot(t0.Add(paceWindow)) {
		t.Fatal("hot at exactly half the budget")
	}
	r.sent(1, t0.Add(paceWindow/2))
	if !r.hot(t0.Add(paceWindow)) {
		t.Fatal("not hot past half the budget, in the window just over")
	}
	r.sent(1, t0.Add(paceWindow+time.Millisecond)) // the next window begins
	if !r.hot(t0.Add(paceWindow + 2*time.Millisecond)) {
		t.Fatal("not hot right after a hot window")
	}
	if r.hot(t0.Add(3 * paceWindow)) {
		t.Fatal("hot after a quiet window")
	}
}

// The pause is each stream's share of the budget: none when the share is
// below minLinger, at most maxLinger with many.
func TestLinger(t *testing.T) {
	perStream := time.Second / time.Duration(budget())
	if few := int64(minLinger / perStream); few > 0 {
		if got := linger(few - 1); got != 0 {
			t.Errorf("%d streams pause %v, want none", few-1, got)
		}
	}
	if got := linger(2); got != 0 && got != 2*perStream {
		t.Errorf("2 streams pause %v, want none or %v", got, 2*perStream)
	}
	n := int64(minLinger/perStream) + 1
	if got := linger(n); got < minLinger || got > minLinger+perStream {
		t.Errorf("%d streams pause %v, want between %v and %v", n, got, minLinger, minLinger+perStream)
	}
	if got := linger(1 << 30); got != maxLinger {
		t.Errorf("a billion streams pause %v, want %v", got, maxLinger)
	}
	t.Logf("GOMAXPROCS %d: %v per stream, 1,000 streams %v", runtime.GOMAXPROCS(0), perStream, linger(1000))
}
