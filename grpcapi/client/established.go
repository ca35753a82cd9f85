package client

import (
	"context"

	"google.golang.org/grpc"
)

// Established opens the watch's stream, if Next has not already, and waits
// until the server has registered the watch: every change made after it
// returns nil comes out of Next (the watch's starting point is no later
// than the registration, and resumes are exact). Updates that arrive
// meanwhile wait for Next. If the connection fails first, the watch
// resumes by its usual rules and Established keeps waiting; it returns the
// error Next would when the watch ends (a status error, io.EOF after
// session_closed), or ctx's error.
//
// Once the watch was registered, Established returns nil at once, even
// while the watch is reconnecting: no change is missed across a resume.
//
// # Notes
//
// Like Next, for the watch's one goroutine. On a dedicated stream the
// server's response headers mark the registration (it sends them once the
// watch is subscribed); on the shared stream, the WatchCreated event.
func (w *Watch) Established(ctx context.Context) error {
	for !w.established {
		if w.err != nil {
			return w.err
		}
		if w.recv == nil {
			w.connect()
			continue
		}
		registered, err := w.await(ctx)
		if err != nil {
			return err
		}
		if registered {
			w.established = true
			break
		}
		// Refused or broken before the server registered it: read the
		// end as Next would, which resumes or ends the watch.
		w.pull()
	}
	return nil
}

// awaitHeader is a dedicated stream's await: the server sends its
// headers once it has subscribed the watch, and ends the stream without
// them when it refuses it. The header is read by a goroutine of its own,
// so that ctx can end the wait; it ends with the stream at the latest
// (Close cancels it).
func awaitHeader(stream grpc.ClientStream) func(ctx context.Context) (bool, error) {
	var got chan bool
	return func(ctx context.Context) (bool, error) {
		if got == nil {
			got = make(chan bool, 1)
			go func() {
				md, err := stream.Header()
				got <- err == nil && md != nil
			}()
		}
		select {
		case ok := <-got:
			got <- ok // for a later call
			return ok, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}
