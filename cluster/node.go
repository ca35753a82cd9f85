package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/varwatch/varwatch/engine"
)

// Node is one varwatch node: an engine over a Log, following the stream.
type Node struct {
	Log    *Log
	Engine *engine.Engine

	ecfg    engine.Config // the engine's, for a replay's scratch engine (replay.go)
	replays chan struct{} // one token per replay running (maxReplays)
}

// Start connects to the stream cfg names and starts an engine over it
// (ecfg with Log set): from the newest snapshot, the local one (cfg.Dir)
// or JetStream's, if there is one, then following the stream from the
// position after it.
// The node serves reads at once, but it is only caught up once Ready is
// closed.
func Start(ctx context.Context, cfg Config, ecfg engine.Config) (*Node, error) {
	if ecfg.Journal != nil {
		return nil, errors.New("cluster: a node keeps no journal of its own; Config.Dir keeps its snapshot")
	}
	l, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e, err := l.NewEngine(ctx, ecfg)
	if err != nil {
		l.Close()
		return nil, err
	}
	if err := l.Follow(ctx, e); err != nil {
		l.Close()
		e.Close()
		return nil, err
	}
	return &Node{Log: l, Engine: e, ecfg: ecfg, replays: make(chan struct{}, maxReplays)}, nil
}

// Ready is closed once the node has caught up with the stream as it was
// when the node started.
func (n *Node) Ready() <-chan struct{} { return n.Log.Ready() }

// Behind is closed if the node fell behind the stream's trim and stopped
// following it (Log.Behind): it must be restarted.
func (n *Node) Behind() <-chan struct{} { return n.Log.Behind() }

// Sync waits until the node has applied every write the stream
// acknowledged before the call (a linearizable read may follow).
func (n *Node) Sync(ctx context.Context) error { return n.Log.Sync(ctx, n.Engine) }

// WaitApplied waits until the node has applied the stream up to pos.
func (n *Node) WaitApplied(ctx context.Context, pos uint64) error {
	return n.Engine.WaitApplied(ctx, pos)
}

// Close stops following the stream, saves the local snapshot (with
// Config.Dir), then closes the engine.
func (n *Node) Close() error {
	n.Log.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := n.Log.SaveLocal(ctx, n.Engine)
	if cerr := n.Engine.Close(); err == nil {
		err = cerr
	}
	return err
}
