package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// groupOpener is a system whose streams can share one wire stream (a
// varwatch Watch stream carries many watches): a group of streams is
// opened together and one reader receives for all of them, so a change
// the whole group wants is received, decoded and converted once and then
// checked once per stream, as a real multiplexing client would do.
type groupOpener interface {
	// groups partitions streams 0..n-1 into the wire streams that carry
	// them; nil means one wire stream per stream (system.openStream).
	groups(n int) [][]int
	// openGroup opens one wire stream carrying a watch per member; once
	// it returns, every later write reaches every member.
	openGroup(ctx context.Context, members []int) (groupStream, error)
}

type groupStream interface {
	// recv returns the next value changes, each naming the members it is
	// for, reusing buf; the names are valid until the next recv.
	recv(buf []groupEvent) ([]groupEvent, error)
	close()
}

// groupEvent is an event and the group members it is for, by position in
// the group's members, plus one (a watch id).
type groupEvent struct {
	event
	to []int64
}

// openGroups is openStreams for a grouped system: per group one reader
// goroutine hands each member's events to that member's checker (the
// reader is the only caller of those checkers' add).
func openGroups(ctx context.Context, g groupOpener, groups [][]int, n int, so streamOpts) (checkers []*checker, stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var streams []groupStream
	checkers = make([]*checker, n)
	for i := range checkers {
		checkers[i] = newChecker(so.scheme, so.coalesce, so.ordered)
	}
	stop = func() {
		cancel()
		mu.Lock()
		for _, s := range streams {
			s.close()
		}
		mu.Unlock()
		wg.Wait()
	}
	sem := make(chan struct{}, 32)
	errc := make(chan error, 1)
	var opening sync.WaitGroup
	for _, members := range groups {
		sem <- struct{}{}
		opening.Add(1)
		go func() {
			defer opening.Done()
			defer func() { <-sem }()
			s, err := g.openGroup(ctx, members)
			if err != nil {
				select {
				case errc <- fmt.Errorf("opening the stream of streams %d..: %w", members[0], err):
				default:
				}
				return
			}
			mu.Lock()
			streams = append(streams, s)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				readGroup(ctx, s, members, checkers, so)
			}()
		}()
	}
	opening.Wait()
	select {
	case err := <-errc:
		stop()
		return nil, nil, err
	default:
	}
	return checkers, stop, nil
}

// readGroup receives for one group until its stream ends, collecting each
// response's events per member so that each checker sees them as one
// batch, in order.
func readGroup(ctx context.Context, s groupStream, members []int, checkers []*checker, so streamOpts) {
	pending := make([][]event, len(members))
	var touched []int
	var buf []groupEvent
	failAll := func(format string, args ...any) {
		for _, m := range members {
			checkers[m].fail(format, args...)
		}
	}
	for {
		evs, err := s.recv(buf)
		if err != nil {
			if ctx.Err() == nil {
				failAll("stream ended: %v", err)
			}
			return
		}
		now := time.Now()
		for _, e := range evs {
			for _, id := range e.to {
				j := int(id - 1)
				if j < 0 || j >= len(members) {
					failAll("event for unknown watch id %d", id)
					return
				}
				if len(pending[j]) == 0 {
					touched = append(touched, j)
				}
				pending[j] = append(pending[j], e.event)
				if so.onEvent != nil {
					so.onEvent(now, e.event)
				}
			}
		}
		for _, j := range touched {
			checkers[members[j]].add(pending[j]) // a failed checker keeps its error; the others go on
			pending[j] = pending[j][:0]
		}
		touched = touched[:0]
		buf = evs[:0]
	}
}
