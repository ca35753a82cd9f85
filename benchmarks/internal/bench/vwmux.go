package bench

import (
	"context"
	"fmt"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// The Watch rows use the generated stub (pb.UnifiedBridgeClient.Watch)
// directly rather than the Go client, so that what they measure is the
// server and the wire: one Watch stream per connection, a watch per
// stream of the row with watch id = its position on the stream + 1, and
// one reader per Watch stream that decodes each response once.

// groups puts the streams of each connection on one Watch stream (mux
// mode only).
func (v *vwSystem) groups(n int) [][]int {
	if !v.mode.mux {
		return nil
	}
	gs := make([][]int, min(len(v.conns), n))
	for i := range n {
		gs[i%len(gs)] = append(gs[i%len(gs)], i)
	}
	return gs
}

func (v *vwSystem) openGroup(ctx context.Context, members []int) (groupStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := pb.NewUnifiedBridgeClient(v.conns[members[0]%len(v.conns)]).Watch(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &vwMux{v: v, st: st, cancel: cancel, created: make([]bool, len(members))}
	for j := range members {
		req := &pb.WatchRequest{Request: &pb.WatchRequest_Create{Create: &pb.WatchCreate{
			WatchId: int64(j + 1), Request: v.watchRequest(), View: v.mode.view}}}
		if err := st.Send(req); err != nil {
			cancel()
			return nil, fmt.Errorf("create watch %d: %w", j+1, err)
		}
	}
	// A watch is registered in the engine when its created event is sent:
	// wait for every member's, keeping any change that came meanwhile.
	for s.nCreated < len(members) {
		if s.early, err = s.next(s.early); err != nil {
			cancel()
			return nil, err
		}
	}
	return s, nil
}

// vwMux is one Watch stream and the watches on it.
type vwMux struct {
	v        *vwSystem
	st       pb.UnifiedBridge_WatchClient
	cancel   context.CancelFunc
	created  []bool
	nCreated int
	early    []groupEvent // changes received while opening
	resp     pb.WatchResponse
}

func (s *vwMux) recv(buf []groupEvent) ([]groupEvent, error) {
	if len(s.early) > 0 {
		buf, s.early = s.early, nil
		return buf, nil
	}
	buf = buf[:0]
	for len(buf) == 0 {
		var err error
		if buf, err = s.next(buf); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// next receives one response and appends its value changes to buf. A
// watch's end is an error: no row cancels or outlives its watches.
func (s *vwMux) next(buf []groupEvent) ([]groupEvent, error) {
	s.resp.Reset()
	if err := s.st.RecvMsg(&s.resp); err != nil {
		return buf, err
	}
	for _, ev := range s.resp.GetEvents() {
		ids := ev.GetWatchIds()
		switch x := ev.GetEvent().(type) {
		case *pb.WatchEvent_Created:
			for _, id := range ids {
				if id < 1 || int(id) > len(s.created) || s.created[id-1] {
					return buf, fmt.Errorf("created event for watch %d, not one waiting to start", id)
				}
				s.created[id-1] = true
				s.nCreated++
			}
		case *pb.WatchEvent_Ended:
			return buf, fmt.Errorf("watches %v ended: code %d %s: %s", ids, x.Ended.GetCode(), x.Ended.GetReason(), x.Ended.GetMessage())
		case *pb.WatchEvent_Update:
			e, change, err := s.v.event(x.Update)
			if err != nil {
				return buf, fmt.Errorf("watches %v: %w", ids, err)
			}
			if change {
				buf = append(buf, groupEvent{event: e, to: ids})
			}
		default:
			return buf, fmt.Errorf("watches %v: empty event", ids)
		}
	}
	return buf, nil
}

func (s *vwMux) close() { s.cancel() }
