// Package grpcapi serves the varwatch wire API (proto package varwatch.v1,
// service UnifiedBridge) over a Backend, which the engine implements.
//
// It is a thin adapter: it converts messages, maps engine errors to status
// codes in one place (status.go) and pumps watch streams, one sender
// goroutine per stream (watch.go); filtered watches share one chain feed
// per filter chain and session (filter.go). It holds no variable state of
// its own.
package grpcapi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/filterfeed"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// Backend is what the server needs from the engine. *engine.Engine
// implements it; tests may wrap it to observe calls (as Consul's
// agent/rpc/subscribe depends on a Backend rather than on its store).
type Backend interface {
	CreateSession(ctx context.Context, req engine.CreateSessionRequest) (engine.SessionInfo, bool, error)
	GetSession(ctx context.Context, id string) (engine.SessionInfo, error)
	ListSessions(ctx context.Context) ([]engine.SessionInfo, error)
	CloseSession(ctx context.Context, id string) (int, error)
	Heartbeat(ctx context.Context, id string) (engine.SessionInfo, error)
	Register(ctx context.Context, req engine.RegisterRequest) (engine.SetResult, error)
	Get(ctx context.Context, session, variable string) (*engine.Variable, error)
	GetMany(ctx context.Context, session string, variables []string) (engine.GetManyResult, error)
	Set(ctx context.Context, req engine.SetRequest) (engine.SetResult, error)
	SetMany(ctx context.Context, req engine.SetManyRequest) (engine.SetManyResult, error)
	SetBatches(ctx context.Context, batches []engine.SetManyRequest) []engine.BatchResult
	List(ctx context.Context, session, pattern string) (engine.ListResult, error)
	Delete(ctx context.Context, session, variable string) (int64, error)
	Watch(ctx context.Context, req engine.WatchRequest) (*engine.Subscription, error)
}

var _ Backend = (*engine.Engine)(nil)

// Defaults and limits of the watch streams.
const (
	// DefaultHeartbeatInterval is the heartbeat interval of a watch that
	// names none, when Config.HeartbeatInterval is zero.
	DefaultHeartbeatInterval = 30 * time.Second
	// MinHeartbeatInterval is the floor: a smaller requested or configured
	// interval is raised to it, so a client cannot make the server spin.
	MinHeartbeatInterval = 50 * time.Millisecond
)

// Config configures a Server. Only Backend is required.
type Config struct {
	Backend Backend
	// Logger receives stream lifecycle logs; nil discards them.
	Logger hclog.Logger
	// HeartbeatInterval is the default watch heartbeat interval
	// (DefaultHeartbeatInterval when zero; raised to MinHeartbeatInterval).
	HeartbeatInterval time.Duration
	// Now is the clock for server_time fields (time.Now when nil).
	Now func() time.Time
	// Filters is the plugin host (a *plugins.Manager); nil means the server
	// has no filters, and a watch that names some gets FAILED_PRECONDITION.
	// See filter.go for how filtered watches run.
	Filters Filters
	// FeedBuffer and MemberBuffer bound the events waiting for a chain feed
	// and for one filtered stream (DefaultFeedBuffer, DefaultMemberBuffer
	// when zero); tests shrink them.
	FeedBuffer   int
	MemberBuffer int
	// Limits (see limits.go): watch streams of the server (default
	// 100000) and of one session (default 1000), and variables one request
	// names (default 10000). Zero means the default, negative no limit.
	MaxWatchStreams           int
	MaxWatchStreamsPerSession int
	MaxRequestIdentifiers     int
	// TenantMaxWatchStreams bounds the watch streams of each tenant
	// (default DefaultTenantMaxWatchStreams; zero: the default, negative:
	// no limit) whose token sets no other (TenantQuota). The limits above
	// apply on top of it.
	TenantMaxWatchStreams int
	// WriteWindow and WriteWindowBytes bound the requests of a write
	// stream the server holds unanswered (DefaultWriteWindow,
	// DefaultWriteWindowBytes when zero; negative: no bound); past them it
	// stops reading the stream (write.go).
	WriteWindow      int
	WriteWindowBytes int
}

// Server implements pb.UnifiedBridgeServer over a Backend. Its methods are
// safe for concurrent use, as gRPC requires.
type Server struct {
	pb.UnimplementedUnifiedBridgeServer

	backend   Backend
	log       hclog.Logger
	heartbeat time.Duration
	now       func() time.Time

	filters Filters
	feeds   *filterfeed.Feeds

	// streams counts watch streams whose handler is running, writeStreams
	// write streams (write.go). Atomic.
	streams      atomic.Int64
	writeStreams atomic.Int64
	// slots and maxIdents enforce the limits (limits.go); stats are the
	// counters behind Stats (metrics.go).
	slots     streamSlots
	maxIdents int
	stats     serverStats
	// rate counts the watch responses sent, to pace them (sendpace.go).
	rate sendRate
	hist *histograms // the distributions (histograms.go)

	writeWindow, writeWindowBytes int // zero: the default
	// shutdown is closed by Shutdown; every watch stream ends on it.
	shutdown     chan struct{}
	shutdownOnce sync.Once
}

// New returns a Server over cfg.Backend.
func New(cfg Config) *Server {
	if cfg.Backend == nil {
		panic("grpcapi: Config.Backend is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FeedBuffer <= 0 {
		cfg.FeedBuffer = DefaultFeedBuffer
	}
	if cfg.MemberBuffer <= 0 {
		cfg.MemberBuffer = DefaultMemberBuffer
	}
	return &Server{
		backend:   cfg.Backend,
		log:       cfg.Logger,
		heartbeat: max(cfg.HeartbeatInterval, MinHeartbeatInterval),
		now:       cfg.Now,
		shutdown:  make(chan struct{}),
		hist:      newHistograms(),

		filters: cfg.Filters,
		feeds: filterfeed.New(filterfeed.Config{Backend: cfg.Backend, Logger: cfg.Logger,
			FeedBuffer: cfg.FeedBuffer, MemberBuffer: cfg.MemberBuffer}),

		slots: streamSlots{
			max:        limitOr(cfg.MaxWatchStreams, DefaultMaxWatchStreams),
			perSession: limitOr(cfg.MaxWatchStreamsPerSession, DefaultMaxWatchStreamsPerSession),
			perTenant:  limitOr(cfg.TenantMaxWatchStreams, DefaultTenantMaxWatchStreams),
			bySession:  map[string]int{},
			byTenant:   map[string]int{},
		},
		maxIdents:        limitOr(cfg.MaxRequestIdentifiers, DefaultMaxRequestIdentifiers),
		writeWindow:      cfg.WriteWindow,
		writeWindowBytes: cfg.WriteWindowBytes,
	}
}

// ActiveStreams returns how many watch streams are being served right now.
// A stream counts from the moment its handler starts until it returns, so
// zero means no handler goroutine is left.
func (s *Server) ActiveStreams() int { return int(s.streams.Load()) }

// ActiveWriteStreams returns how many write streams (WriteVariables) are
// being served right now.
func (s *Server) ActiveWriteStreams() int { return int(s.writeStreams.Load()) }

// ActiveFeeds returns how many chain feeds (see filter.go) are running.
func (s *Server) ActiveFeeds() int {
	return s.feeds.Active()
}

// WaitFeeds waits until every chain feed goroutine has exited; call it
// after the watch streams have ended (Shutdown, then the gRPC server's
// stop), before closing the plugin host.
func (s *Server) WaitFeeds() { s.feeds.Wait() }

// Shutdown ends every watch stream, current and future, with UNAVAILABLE
// naming the revision to resume from. Call it before grpc.Server's
// GracefulStop, which would otherwise wait for watch streams forever.
// Unary RPCs are not affected. Idempotent.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() { close(s.shutdown) })
}

// Ping echoes the message with the server time.
func (s *Server) Ping(_ context.Context, req *pb.PingRequest) (*pb.PingResponse, error) {
	return &pb.PingResponse{Message: req.GetMessage(), ServerTime: timestamppb.New(s.now())}, nil
}

// InitializeSession creates a session, or answers the existing one.
func (s *Server) InitializeSession(ctx context.Context, req *pb.InitializeSessionRequest) (*pb.InitializeSessionResponse, error) {
	ttl, err := durationFromProto(req.GetTtl(), "ttl")
	if err != nil {
		return nil, err
	}
	info, created, err := s.backend.CreateSession(ctx, engine.CreateSessionRequest{
		ID: req.GetSessionId(), Metadata: req.GetMetadata(), TTL: ttl,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.InitializeSessionResponse{Session: sessionToProto(info), Created: created}, nil
}

// GetSession answers a session's info (and refreshes its TTL: it is a use).
func (s *Server) GetSession(ctx context.Context, req *pb.GetSessionRequest) (*pb.GetSessionResponse, error) {
	info, err := s.backend.GetSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetSessionResponse{Session: sessionToProto(info)}, nil
}

// ListSessions answers every live session, sorted by id.
func (s *Server) ListSessions(ctx context.Context, _ *pb.ListSessionsRequest) (*pb.ListSessionsResponse, error) {
	infos, err := s.backend.ListSessions(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ListSessionsResponse{Sessions: make([]*pb.Session, len(infos))}
	for i, info := range infos {
		resp.Sessions[i] = sessionToProto(info)
	}
	return resp, nil
}

// CleanupSession deletes a session and its variables.
func (s *Server) CleanupSession(ctx context.Context, req *pb.CleanupSessionRequest) (*pb.CleanupSessionResponse, error) {
	n, err := s.backend.CloseSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CleanupSessionResponse{VariablesDeleted: int64(n)}, nil
}

// Heartbeat refreshes a session's TTL. An unknown or expired session is not
// an error here: the answer is OK with session_valid=false, so a client's
// keep-alive loop can tell "gone" from "server unreachable".
func (s *Server) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	info, err := s.backend.Heartbeat(ctx, req.GetSessionId())
	resp := &pb.HeartbeatResponse{ServerTime: timestamppb.New(s.now())}
	switch {
	case err == nil:
		resp.SessionValid = true
		resp.ExpiresAt = timeToProto(info.ExpiresAt)
		resp.Incarnation = info.Incarnation
	case errors.Is(err, engine.ErrSessionNotFound):
		resp.SessionValid = false
	default:
		return nil, toStatus(err)
	}
	return resp, nil
}

// RegisterVariable creates a variable.
func (s *Server) RegisterVariable(ctx context.Context, req *pb.RegisterVariableRequest) (*pb.RegisterVariableResponse, error) {
	typ, err := typeFromProto(req.GetType())
	if err != nil {
		return nil, err
	}
	val, err := valueFromProto(req.GetInitialValue(), "initial_value")
	if err != nil {
		return nil, err
	}
	res, err := s.backend.Register(ctx, engine.RegisterRequest{
		Session:     req.GetSessionId(),
		Name:        req.GetName(),
		Type:        typ,
		Value:       val,
		Constraints: constraintsFromProto(req.GetConstraints()),
		Metadata:    req.GetMetadata(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RegisterVariableResponse{Variable: variableToProto(res.Variable), Revision: res.Revision}, nil
}

// GetVariable answers one variable by id or name.
func (s *Server) GetVariable(ctx context.Context, req *pb.GetVariableRequest) (*pb.GetVariableResponse, error) {
	if req.GetVariableIdentifier() == "" {
		return nil, invalidf("variable_identifier is empty")
	}
	v, err := s.backend.Get(ctx, req.GetSessionId(), req.GetVariableIdentifier())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetVariableResponse{Variable: variableToProto(v)}, nil
}

// GetVariables answers several variables read at one revision; identifiers
// that match nothing are listed in missing rather than failing the call.
func (s *Server) GetVariables(ctx context.Context, req *pb.GetVariablesRequest) (*pb.GetVariablesResponse, error) {
	if err := s.checkIdentifiers(len(req.GetVariableIdentifiers()), "variable_identifiers"); err != nil {
		return nil, err
	}
	res, err := s.backend.GetMany(ctx, req.GetSessionId(), req.GetVariableIdentifiers())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetVariablesResponse{
		Variables: variablesToProto(res.Found),
		Missing:   res.Missing,
		Revision:  res.Revision,
	}, nil
}

// SetVariable writes one variable.
func (s *Server) SetVariable(ctx context.Context, req *pb.SetVariableRequest) (*pb.SetVariableResponse, error) {
	defer since(s.hist.setOne, time.Now())
	set, err := setFromProto(req, "value")
	if err != nil {
		return nil, err
	}
	res, err := s.backend.Set(ctx, set)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SetVariableResponse{Variable: variableToProto(res.Variable), Revision: res.Revision}, nil
}

// setFromProto maps one SetVariableRequest; field names its value field in
// error messages.
func setFromProto(req *pb.SetVariableRequest, field string) (engine.SetRequest, error) {
	if req.GetVariableIdentifier() == "" {
		return engine.SetRequest{}, invalidf("variable_identifier is empty")
	}
	val, err := valueFromProto(req.GetValue(), field)
	if err != nil {
		return engine.SetRequest{}, err
	}
	var create engine.Type
	if t := req.GetCreateType(); t != pb.VariableType_VARIABLE_TYPE_UNSPECIFIED {
		if create, err = typeFromProto(t); err != nil {
			return engine.SetRequest{}, invalidf("create_type: %s", message(err))
		}
	}
	return engine.SetRequest{
		CreateType:         create,
		Session:            req.GetSessionId(),
		Variable:           req.GetVariableIdentifier(),
		Value:              val,
		Metadata:           req.GetMetadata(),
		Source:             req.GetSource(),
		ExpectedVersion:    req.GetExpectedVersion(),
		HasExpectedVersion: req.ExpectedVersion != nil,
	}, nil
}

// ListVariables answers the variables matching an optional glob, by name.
func (s *Server) ListVariables(ctx context.Context, req *pb.ListVariablesRequest) (*pb.ListVariablesResponse, error) {
	res, err := s.backend.List(ctx, req.GetSessionId(), req.GetPattern())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ListVariablesResponse{Variables: variablesToProto(res.Variables), Revision: res.Revision}, nil
}

// DeleteVariable removes a variable.
func (s *Server) DeleteVariable(ctx context.Context, req *pb.DeleteVariableRequest) (*pb.DeleteVariableResponse, error) {
	if req.GetVariableIdentifier() == "" {
		return nil, invalidf("variable_identifier is empty")
	}
	rev, err := s.backend.Delete(ctx, req.GetSessionId(), req.GetVariableIdentifier())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeleteVariableResponse{Revision: rev}, nil
}
