package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/varwatch/varwatch/grpcapi"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// watchStream is the grpc.ServerStream that grpcapi.Server's
// WatchVariablesBatched sends on when an HTTP watch is served in-process:
// it turns each batch into Server-Sent Events and writes them with one
// flush per batch.
//
// # Notes
//
// Only the handler goroutine of the watch uses it (grpcapi sends on a
// stream from one goroutine), so its fields need no lock. A write that
// blocks past the write timeout fails, which ends the watch: the pump
// stops draining and the subscription is released.
type watchStream struct {
	ctx         context.Context
	out         *eventWriter
	incarnation string
	header      metadata.MD
	initial     []byte // the initial values received so far, JSON, comma-separated
	failed      bool   // a write failed: the client is gone
}

var _ interface {
	Send(*pb.VariableUpdateBatch) error
} = (*watchStream)(nil)

func (s *watchStream) Context() context.Context { return s.ctx }

func (s *watchStream) SetHeader(md metadata.MD) error {
	s.header = metadata.Join(s.header, md)
	return nil
}

// SendHeader is called once the watch is registered, with the snapshot
// revision and the incarnation (grpcapi.SnapshotRevisionHeader,
// IncarnationHeader): the created event.
func (s *watchStream) SendHeader(md metadata.MD) error {
	md = metadata.Join(s.header, md)
	s.incarnation = first(md, grpcapi.IncarnationHeader)
	snap, _ := strconv.ParseInt(first(md, grpcapi.SnapshotRevisionHeader), 10, 64)
	b := append([]byte(`{"snapshot_revision":`), strconv.FormatInt(snap, 10)...)
	b = append(b, `,"incarnation":`...)
	b = strconv.AppendQuote(b, s.incarnation)
	s.out.event("created", "", append(b, '}'))
	return s.flush()
}

func (s *watchStream) SetTrailer(metadata.MD) {}

func (s *watchStream) RecvMsg(any) error { return io.EOF }

func (s *watchStream) Send(b *pb.VariableUpdateBatch) error { return s.SendMsg(b) }

// SendMsg takes one VariableUpdateBatch. grpcapi sends them pre-encoded
// (a proto.Message whose bytes are the batch), so it is decoded first.
func (s *watchStream) SendMsg(m any) error {
	batch, ok := m.(*pb.VariableUpdateBatch)
	if !ok {
		pm, isProto := m.(proto.Message)
		if !isProto {
			return errors.New("httpapi: watch sent a message that is not a proto message")
		}
		b, err := proto.Marshal(pm)
		if err != nil {
			return err
		}
		batch = &pb.VariableUpdateBatch{}
		if err := proto.Unmarshal(b, batch); err != nil {
			return err
		}
	}
	s.write(batch.GetUpdates())
	return s.flush()
}

// write turns updates into events. A batch ends on a revision boundary
// (grpcapi never splits an atomic write), so consecutive changes of one
// revision are one update event.
func (s *watchStream) write(ups []*pb.VariableUpdate) {
	for i := 0; i < len(ups); {
		u := ups[i]
		switch u.GetUpdateType() {
		case "initial_value":
			s.initial = appendJSONItem(s.initial, u)
			i++
		case "initial_values_complete":
			s.out.event("snapshot", EventID(s.incarnation, u.GetRevision()), group(u.GetRevision(), s.initial))
			s.initial = nil
			i++
		case "heartbeat":
			b, _ := jsonOut.Marshal(u)
			s.out.event("heartbeat", EventID(s.incarnation, u.GetRevision()), b)
			i++
		default:
			rev := u.GetRevision()
			var items []byte
			for ; i < len(ups) && ups[i].GetRevision() == rev && isChange(ups[i]); i++ {
				items = appendJSONItem(items, ups[i])
			}
			s.out.event("update", EventID(s.incarnation, rev), group(rev, items))
		}
	}
}

// isChange reports whether u is a change (not an initial value or a
// position marker).
func isChange(u *pb.VariableUpdate) bool {
	switch u.GetUpdateType() {
	case "initial_value", "initial_values_complete", "heartbeat":
		return false
	}
	return true
}

func (s *watchStream) flush() error {
	if s.failed {
		return errWriteFailed
	}
	if err := s.out.flush(); err != nil {
		s.failed = true
		return err
	}
	return nil
}

var errWriteFailed = errors.New("httpapi: writing the event stream failed")

// appendJSONItem appends u as JSON to a comma-separated list.
func appendJSONItem(items []byte, u *pb.VariableUpdate) []byte {
	if len(items) > 0 {
		items = append(items, ',')
	}
	b, _ := jsonOut.Marshal(u)
	return append(items, b...)
}

// group is the data of a snapshot or update event.
func group(rev int64, items []byte) []byte {
	b := append([]byte(`{"revision":`), strconv.FormatInt(rev, 10)...)
	b = append(b, `,"updates":[`...)
	b = append(b, items...)
	return append(b, "]}"...)
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// eventWriter formats Server-Sent Events into a buffer and writes it with
// one write and one flush, under a write deadline.
type eventWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
}

func newEventWriter(w http.ResponseWriter, timeout time.Duration) *eventWriter {
	return &eventWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

// event appends one event. data must be one line (JSON without newlines,
// as protojson and the builders above write it).
func (e *eventWriter) event(name, id string, data []byte) {
	e.buf = append(e.buf, "event: "...)
	e.buf = append(e.buf, name...)
	if id != "" {
		e.buf = append(e.buf, "\nid: "...)
		e.buf = append(e.buf, id...)
	}
	e.buf = append(e.buf, "\ndata: "...)
	e.buf = append(e.buf, data...)
	e.buf = append(e.buf, "\n\n"...)
}

// retry appends the reconnection delay an EventSource should use.
func (e *eventWriter) retry(d time.Duration) {
	e.buf = append(e.buf, "retry: "...)
	e.buf = strconv.AppendInt(e.buf, d.Milliseconds(), 10)
	e.buf = append(e.buf, "\n\n"...)
}

func (e *eventWriter) flush() error {
	if err := e.rc.SetWriteDeadline(time.Now().Add(e.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if len(e.buf) > 0 {
		if _, err := e.w.Write(e.buf); err != nil {
			return err
		}
		e.buf = e.buf[:0]
	}
	return e.rc.Flush()
}
