package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// A replicated engine's snapshot is its state at one log position: what
// a node starting later restores (NewFromLogged) before it applies the
// log from the next position on, instead of applying the whole log.
//
// It holds, besides the sessions (the journal's snapshot format,
// snapshot.go), the position and the proposal ids of the dedupe window,
// oldest first: a duplicate that arrives after the snapshot must be
// dropped by the restored node as it is by the others, or the nodes would
// disagree. What each node decides by its own clock (when it last asked
// for a refresh, replState.asked and look) is not in it; the restored
// node starts those afresh, as a node that just joined.

// loggedSnapshotVersion is the first field of a replicated snapshot.
const loggedSnapshotVersion = 1

// LoggedSnapshot is a replicated engine's state captured at one log
// position. It is immutable once captured and may be written from any
// goroutine, any number of times.
type LoggedSnapshot struct {
	position uint64
	ids      []string // the dedupe window, oldest first
	img      *image
}

// Position is the log position the snapshot was taken at: it reflects
// every entry up to it and none after.
func (s *LoggedSnapshot) Position() uint64 { return s.position }

// Encode encodes the snapshot to w. The encoding is the same on every
// node that captured the same position.
func (s *LoggedSnapshot) Encode(w io.Writer) error {
	e := &encoder{}
	e.uvarint(loggedSnapshotVersion)
	e.uvarint(s.position)
	e.strings(s.ids)
	if _, err := w.Write(e.buf); err != nil {
		return err
	}
	// img.write sorts its slices in place; a copy of the session list
	// keeps a second Encode (on another goroutine) off the first one's.
	img := &image{sessions: append([]sessionImage(nil), s.img.sessions...)}
	for i := range img.sessions {
		img.sessions[i].vars = append([]*Variable(nil), img.sessions[i].vars...)
	}
	return img.write(w)
}

// CaptureLogged captures the state of a replicated engine at the log
// position it has applied so far. It costs the loop what a journal
// snapshot does (pointer copies per variable and per history revision);
// encoding it (Encode) happens off the loop.
//
// A caller that wants the snapshot at a given position calls it right
// after ApplyLogged of that position, from the goroutine that calls
// ApplyLogged: commands apply in the order they are submitted.
func (e *Engine) CaptureLogged(ctx context.Context) (*LoggedSnapshot, error) {
	if e.repl == nil {
		return nil, errors.New("engine: CaptureLogged on an engine without a Log")
	}
	c := &captureLoggedCmd{}
	return run(ctx, e, c, &c.reply)
}

type captureLoggedCmd struct {
	reply[*LoggedSnapshot]
}

func (c *captureLoggedCmd) apply(st *state) {
	r := st.repl
	ids := make([]string, 0, len(r.ring))
	ids = append(ids, r.ring[r.next:]...)
	ids = append(ids, r.ring[:r.next]...)
	c.set(&LoggedSnapshot{position: r.applied, ids: ids, img: st.capture()}, nil)
}

// LoggedSnapshotPosition reads the position of an encoded snapshot
// without decoding the rest, to choose between snapshots.
func LoggedSnapshotPosition(snapshot []byte) (uint64, error) {
	d := &decoder{buf: snapshot}
	if v := d.uvarint(); d.err == nil && v != loggedSnapshotVersion {
		return 0, fmt.Errorf("%w: replicated snapshot version %d (this server reads %d)", errCorrupt, v, loggedSnapshotVersion)
	}
	pos := d.uvarint()
	return pos, d.err
}

// NewFromLogged starts a replicated engine (cfg.Log set) from a snapshot
// another node's Encode encoded, and returns it with the snapshot's
// position: the caller applies the log from the next position on. A
// snapshot that does not decode is an error, and no engine starts.
func NewFromLogged(cfg Config, snapshot io.Reader) (*Engine, uint64, error) {
	if cfg.Log == nil {
		return nil, 0, errors.New("engine: NewFromLogged without a Log")
	}
	if cfg.Journal != nil {
		return nil, 0, errors.New("engine: NewFromLogged with a Journal")
	}
	buf, err := io.ReadAll(snapshot)
	if err != nil {
		return nil, 0, fmt.Errorf("engine: read snapshot: %w", err)
	}
	d := &decoder{buf: buf}
	if v := d.uvarint(); d.err == nil && v != loggedSnapshotVersion {
		return nil, 0, fmt.Errorf("%w: replicated snapshot version %d (this server reads %d)", errCorrupt, v, loggedSnapshotVersion)
	}
	pos := d.uvarint()
	ids := d.strings()
	if d.err != nil {
		return nil, 0, d.err
	}
	cfg = cfg.withDefaults()
	st := newState(cfg)
	st.repl = newReplState()
	if err := st.restore(bytes.NewReader(d.buf)); err != nil {
		return nil, 0, err
	}
	st.repl.applied = pos
	for _, id := range ids {
		st.repl.remember(id)
	}
	e := start(cfg, st)
	e.repl.applied.Store(pos)
	return e, pos, nil
}
