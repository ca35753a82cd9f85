package grpcapi

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/filterfeed"
	"github.com/varwatch/varwatch/plugins"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// Filtered watches run through package filterfeed, which shares one run of
// a chain among every watch of a session that uses it; this file maps
// requests to it and its errors to statuses.

// Filters is what the server needs from the plugin host; *plugins.Manager
// implements it. Acquire returns nil when no filter applies (no filters
// requested and no default chain).
type Filters interface {
	Acquire(ctx context.Context, filters []plugins.FilterSpec) (*plugins.Chain, error)
}

var _ Filters = (*plugins.Manager)(nil)

// Defaults of filtered watches; Config fields override them.
const (
	// DefaultFeedBuffer is how many events may wait for a chain feed
	// before the engine cuts it off (ending every member with
	// RESOURCE_EXHAUSTED): large, since one feed serves many streams.
	DefaultFeedBuffer = filterfeed.DefaultFeedBuffer
	// DefaultMemberBuffer is how many filtered events may wait for one
	// stream before it alone is cut off with RESOURCE_EXHAUSTED.
	DefaultMemberBuffer = filterfeed.DefaultMemberBuffer
)

// errNoFilters answers a watch with filters on a server without plugins.
var errNoFilters = statusError(ReasonFiltersNotLoaded, "no filters are loaded on this server", nil)

// filtersFromProto maps a request's chain.
func filtersFromProto(fs []*pb.FilterSpec) ([]plugins.FilterSpec, error) {
	out := make([]plugins.FilterSpec, len(fs))
	for i, f := range fs {
		if f.GetName() == "" {
			return nil, invalidf("filters[%d].name is empty", i)
		}
		out[i] = plugins.FilterSpec{Name: f.GetName(), Params: f.GetParams()}
	}
	return out, nil
}

// acquireChain answers the chain for req, nil for an unfiltered watch.
func (s *Server) acquireChain(ctx context.Context, req *pb.WatchVariablesRequest) (*plugins.Chain, error) {
	if s.filters == nil {
		if len(req.GetFilters()) > 0 {
			return nil, errNoFilters
		}
		return nil, nil
	}
	specs, err := filtersFromProto(req.GetFilters())
	if err != nil {
		return nil, err
	}
	chain, err := s.filters.Acquire(ctx, specs)
	var fe *plugins.FilterError
	switch {
	case errors.As(err, &fe):
		return nil, invalidf("%s", strings.TrimPrefix(fe.Error(), "plugins: "))
	case errors.Is(err, plugins.ErrClosed):
		return nil, statusError(ReasonShuttingDown, "server is shutting down", nil)
	case err != nil:
		return nil, statusError(ReasonInternal, "starting filters: "+err.Error(), nil)
	}
	if chain != nil && req.StartRevision != nil {
		chain.Release()
		return nil, unimplementedf("start_revision with filters is not supported (a replay through a shared, stateful chain cannot reproduce what the stream would have seen); watch with include_initial_values instead")
	}
	return chain, nil
}

// openFiltered registers a filtered watch: a member of its chain's feed
// for the session, started at a snapshot of its own. The caller keeps the
// chain and the stream slot; the result's close leaves the feed.
func (s *Server) openFiltered(ctx context.Context, wreq engine.WatchRequest, pace pacing, chain *plugins.Chain) (*openedWatch, error) {
	m, err := s.feeds.Open(ctx, wreq, chain)
	var ended *filterfeed.EndError
	switch {
	case errors.As(err, &ended):
		return nil, s.endStatus(ctx, s.log, 0, ended.Err, true)
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return nil, toStatus(status.FromContextError(ctx.Err()).Err())
	case err != nil:
		return nil, toStatus(err)
	}
	rev := m.SnapshotRevision()
	log := s.log.With("session", wreq.Session, "snapshot_revision", rev, "chain", chain.Name())
	log.Debug("filtered watch started", "variables", len(wreq.Variables), "pattern", wreq.Pattern, "heartbeat", pace.heartbeat)
	return &openedWatch{src: m, pace: pace, greet: !wreq.IncludeInitialValues, filtered: true, snapshot: rev,
		from: startPosition(wreq, rev), incarnation: m.Incarnation(), log: log, close: m.Close}, nil
}
