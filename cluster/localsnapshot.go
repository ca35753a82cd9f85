package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/varwatch/varwatch/engine"
)

// A node with a directory (Config.Dir, serve's --data-dir) also keeps the
// newest snapshot it captured there, and one more when it closes: a node
// restarting starts from it when it is newer than the newest in JetStream
// (a node closed cleanly has one of the position it stopped at, so it
// replays only what was written while it was down) and the stream still
// holds every entry after it.
//
// The file names the stream and the time JetStream created it: a stream
// deleted and created again is another log, whose positions mean other
// entries, and a snapshot of the old one must not be applied to it.

// localSnapshotFile is the file in Config.Dir; its temporary copy is
// written beside it and renamed over it.
const localSnapshotFile = "cluster-snapshot"

// localHeader is the first line of the file.
const localHeader = "varwatch cluster snapshot 1"

// streamIdentity names the stream this Log follows, for the file.
func (l *Log) streamIdentity() string {
	return l.cfg.Stream + " " + l.stream.CachedInfo().Created.UTC().Format(time.RFC3339Nano)
}

// writeLocal replaces the file with data, a snapshot's encoding; the
// file is whole or the old one (written to a temporary file, synced,
// renamed).
func (l *Log) writeLocal(data []byte) error {
	path := filepath.Join(l.cfg.Dir, localSnapshotFile)
	tmp, err := os.CreateTemp(l.cfg.Dir, localSnapshotFile+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	w := bufio.NewWriter(tmp)
	fmt.Fprintf(w, "%s\n%s\n%d\n", localHeader, l.streamIdentity(), len(data))
	w.Write(data)
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(l.cfg.Dir); err == nil { // the rename itself
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// readLocal returns the snapshot the file holds, or nil when there is
// none for this stream (no file, another stream's, or one cut short).
func (l *Log) readLocal() ([]byte, error) {
	if l.cfg.Dir == "" {
		return nil, nil
	}
	f, err := os.Open(filepath.Join(l.cfg.Dir, localSnapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	line := func() string {
		s, _ := r.ReadString('\n')
		return string(bytes.TrimSuffix([]byte(s), []byte("\n")))
	}
	if h := line(); h != localHeader {
		return nil, fmt.Errorf("cluster: %s is not a snapshot this server reads (%q)", f.Name(), h)
	}
	if id := line(); id != l.streamIdentity() {
		l.log.Warn("the local snapshot is of another stream; ignoring it", "file", f.Name(), "its_stream", id, "stream", l.streamIdentity())
		return nil, nil
	}
	n, err := strconv.Atoi(line())
	if err != nil || n < 0 {
		return nil, fmt.Errorf("cluster: %s: bad length", f.Name())
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", f.Name(), err)
	}
	return data, nil
}

// SaveLocal captures e and writes it to Config.Dir, if there is one: the
// snapshot a clean stop leaves for the next start. Call it once the
// follower has stopped (after Close), so that nothing moves meanwhile.
func (l *Log) SaveLocal(ctx context.Context, e *engine.Engine) error {
	if l.cfg.Dir == "" {
		return nil
	}
	s, err := e.CaptureLogged(ctx)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := s.Encode(&buf); err != nil {
		return err
	}
	if err := l.writeLocal(buf.Bytes()); err != nil {
		return fmt.Errorf("cluster: write the local snapshot: %w", err)
	}
	l.log.Info("saved the local snapshot", "position", s.Position(), "bytes", buf.Len())
	return nil
}
