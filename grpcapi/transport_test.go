package grpcapi

import (
	"bytes"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/varwatch/varwatch/engine"
)

// rawConn is an HTTP/2 connection driven frame by frame, to send what no
// gRPC client would: streams that send their headers and then nothing.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	next uint32 // the next client stream id
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return &rawConn{t: t, conn: conn, fr: fr, next: 1}
}

// openHalf opens a stream to method with the extra headers and sends no
// message and no end of stream: a request that never arrives.
func (rc *rawConn) openHalf(method string, extra ...string) {
	rc.t.Helper()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	fields := []string{":method", "POST", ":scheme", "http", ":path", method, ":authority", "localhost",
		"content-type", "application/grpc", "te", "trailers"}
	fields = append(fields, extra...)
	for i := 0; i < len(fields); i += 2 {
		if err := enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}); err != nil {
			rc.t.Fatal(err)
		}
	}
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: rc.next, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
		rc.t.Fatal(err)
	}
	rc.next += 2
}

// sync sends a ping and reads frames until its ack: the server's reader
// has then handled every frame sent before it, and queued its answers
// ahead of the ack. It returns how the server ended each stream it ended
// before the ack (a trailers-only answer, or a reset).
func (rc *rawConn) sync() map[uint32]string {
	rc.t.Helper()
	data := [8]byte{'v', 'a', 'r', 'w', 'a', 't', 'c', 'h'}
	if err := rc.fr.WritePing(false, data); err != nil {
		rc.t.Fatal(err)
	}
	ended := map[uint32]string{}
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			rc.t.Fatalf("reading frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if f.IsAck() && f.Data == data {
				return ended
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := rc.fr.WriteSettingsAck(); err != nil {
					rc.t.Fatal(err)
				}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				ended[f.StreamID] = f.PseudoValue("status") + " grpc-status=" + headerValue(f, "grpc-status")
			}
		case *http2.RSTStreamFrame: // after the trailers of a stream the client had not ended
			if _, ok := ended[f.StreamID]; !ok {
				ended[f.StreamID] = "rst " + f.ErrCode.String()
			}
		}
	}
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// TestAuthRefusesHalfOpenStreamsAtTheirStart: streams without a token that
// send headers and never their request are refused as their headers
// arrive, so they hold no goroutine. A unary handler runs only after its
// request has been read, so without the tap handle every such stream of a
// unary method held a goroutine until the connection closed.
func TestAuthRefusesHalfOpenStreamsAtTheirStart(t *testing.T) {
	const streams = 200
	cases := []struct {
		name   string
		method string
		extra  []string
	}{
		{name: "unary, no token", method: "/varwatch.v1.UnifiedBridge/GetSession"},
		{name: "unary, unknown token", method: "/varwatch.v1.UnifiedBridge/SetVariables",
			extra: []string{"authorization", bearer("not-a-token-0123456789")}},
		{name: "server stream, no token", method: "/varwatch.v1.UnifiedBridge/WatchVariables"},
		{name: "bidi stream, no token", method: "/varwatch.v1.UnifiedBridge/Watch"},
		{name: "unknown method, no token", method: "/varwatch.v1.UnifiedBridge/NoSuchMethod",
			extra: []string{"x-padding", strings.Repeat("p", 8<<10)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eng := engine.New(engine.Config{})
			t.Cleanup(func() { _ = eng.Close() })
			auth := NewAuth(testTokens(t, adminToken+"\n"), nil)
			_, cc := serveLoopback(t, New(Config{Backend: eng}), auth.ServerOptions()...)
			rc := dialRaw(t, cc.Target())
			rc.sync()
			before := runtime.NumGoroutine()
			for range streams {
				rc.openHalf(tc.method, tc.extra...)
			}
			ended := rc.sync()
			grew := runtime.NumGoroutine() - before
			if grew > streams/10 {
				t.Errorf("%d half-open streams without a valid token: goroutines grew by %d", streams, grew)
			}
			if len(ended) != streams {
				t.Fatalf("%d of %d streams were refused before their request", len(ended), streams)
			}
			for id, st := range ended {
				if st != "200 grpc-status=16" { // UNAUTHENTICATED
					t.Fatalf("stream %d ended with %s, want UNAUTHENTICATED", id, st)
				}
			}
			if got := sessionState(t, eng); got != "" {
				t.Errorf("state changed: %s", got)
			}
		})
	}
}
