package grpcapi

import (
	"context"
	"errors"
	"time"

	"github.com/varwatch/varwatch/engine"
)

// A node of a cluster keeps a bounded watch history, like one server, but
// the cluster's log reaches further back (to its oldest snapshot): a
// resume older than the history can be served by replaying the log
// (cluster.Node.Replay). WithReplay adds that to a Backend; openWatch
// asks for a replay only when the engine refused a resume as compacted,
// so a resume the history serves costs nothing more.

// ReplayedWatch is a watch served by replaying the log: the changes after
// its start revision, then the engine's live ones, as one stream with the
// methods of an *engine.Subscription (a *cluster.Replay is one).
type ReplayedWatch interface {
	SnapshotRevision() int64
	Incarnation() string
	Drain(spare []engine.Event) ([]engine.Event, error)
	Ready() <-chan struct{}
	Done() <-chan struct{}
	Pending() int
	Heartbeat(now time.Time) engine.Event
	Close()
}

// ReplayFunc serves req, a resume the engine's history no longer holds,
// by replaying the log. An error wrapping engine.ErrCompacted means the
// log does not reach back that far either.
type ReplayFunc func(ctx context.Context, req engine.WatchRequest) (ReplayedWatch, error)

// WithReplay returns b serving the resumes its engine's history cannot
// with replay.
func WithReplay(b Backend, replay ReplayFunc) Backend {
	return &replaying{Backend: b, replay: replay}
}

type replaying struct {
	Backend
	replay ReplayFunc
}

// replayer is a Backend that can replay a compacted resume.
type replayer interface {
	watchReplayed(ctx context.Context, req engine.WatchRequest, compacted error) (ReplayedWatch, error)
}

// watchReplayed serves req, which the engine refused with compacted, from
// the log; when the log does not reach back either, the engine's error
// stands (it names the oldest revision the history holds).
func (r *replaying) watchReplayed(ctx context.Context, req engine.WatchRequest, compacted error) (ReplayedWatch, error) {
	w, err := r.replay(ctx, req)
	if errors.Is(err, engine.ErrCompacted) {
		return nil, compacted
	}
	if err != nil {
		return nil, err
	}
	return w, nil
}

// watchSource is a watch openWatch pumps: an *engine.Subscription or a
// ReplayedWatch.
type watchSource interface {
	source
	Incarnation() string
	Close()
}

// watch registers req's subscription on the backend, falling back to a
// replay of the log for a resume the engine's history no longer holds.
func (s *Server) watch(ctx context.Context, req engine.WatchRequest) (watchSource, error) {
	sub, err := s.backend.Watch(ctx, req)
	if err == nil {
		return sub, nil
	}
	if r, ok := s.backend.(replayer); ok && req.Resume && errors.Is(err, engine.ErrCompacted) {
		return r.watchReplayed(ctx, req, err)
	}
	return nil, err
}
