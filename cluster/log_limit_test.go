package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/varwatch/varwatch/cluster/natstest"
	"github.com/varwatch/varwatch/engine"
)

// proposed is what one Propose's done was called with.
type proposed struct {
	seq uint64
	err error
}

// propose proposes msg on l and returns a channel of its answer.
func propose(l *Log, id string, msg []byte) <-chan proposed {
	ch := make(chan proposed, 1)
	l.Propose(id, msg, func(seq uint64, err error) { ch <- proposed{seq, err} })
	return ch
}

func answer(t *testing.T, ch <-chan proposed) proposed {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(20 * time.Second):
		t.Fatal("a proposal was not answered")
		return proposed{}
	}
}

// The largest message a Log takes is what the servers' max_payload leaves
// once a publish's headers are counted (nats.go refuses data plus headers
// past it): a proposal of exactly that size, alone or batched with others
// to that size, is stored; one byte more is a *engine.LimitError at once,
// and the proposals after it are stored as usual.
func TestProposalSizeLimit(t *testing.T) {
	nats := natstest.Start(t, 1, natstest.MaxPayload(64<<10))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, Config{URL: nats.URL(), PublishTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.maxMsg >= 64<<10 {
		t.Fatalf("maxMsg %d leaves no room for headers in a max_payload of %d", l.maxMsg, 64<<10)
	}
	// Proposal ids as long as the engine's (a 12-digit node prefix and a
	// base-36 counter near its largest).
	id := func(s string) string { return "0123456789ab-3w5e11264sgs" + s }

	if p := answer(t, propose(l, id("a"), bytes.Repeat([]byte{'a'}, l.maxMsg))); p.err != nil {
		t.Fatalf("a proposal of exactly %d bytes: %v", l.maxMsg, p.err)
	}
	// Halves queued together go out as one message of maxMsg bytes (the
	// first publishes alone while the others queue behind it).
	var chs []<-chan proposed
	for i := range 5 {
		chs = append(chs, propose(l, id(string(rune('b'+i))), bytes.Repeat([]byte{'b'}, l.maxMsg/2)))
	}
	for i, ch := range chs {
		if p := answer(t, ch); p.err != nil {
			t.Fatalf("batched proposal %d: %v", i, p.err)
		}
	}

	p := answer(t, propose(l, id("big"), bytes.Repeat([]byte{'c'}, l.maxMsg+1)))
	var le *engine.LimitError
	if !errors.As(p.err, &le) || le.Limit != LimitMessageBytes || le.Value != int64(l.maxMsg) || errors.Is(p.err, ErrBacklog) {
		t.Fatalf("a proposal of %d bytes: %v; want a LimitError %s=%d", l.maxMsg+1, p.err, LimitMessageBytes, l.maxMsg)
	}
	if p := answer(t, propose(l, id("after"), []byte("small"))); p.err != nil || p.seq == 0 {
		t.Fatalf("a proposal after the refused one: %d, %v", p.seq, p.err)
	}
}
