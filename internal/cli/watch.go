package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	vwclient "github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

func watchCommand() *command {
	return &command{
		name:    "watch",
		args:    "SESSION [VAR...]",
		summary: "print updates as they happen",
		doc: `Watches variables and prints one line per update as it arrives:

  rev=2 value_change temperature 21.5 -> 22 (source=cli)

VARs are names or ids; --pattern adds every variable whose name matches a
glob, including ones registered later (variable_registered). With neither,
the whole session is watched. --initial first prints each current value
(initial_value) and then initial_values_complete, at the snapshot revision:
every change after it follows, none is missed or repeated.

heartbeat lines say the stream is complete up to their revision. The
watch ends by itself when the session is deleted or expires
(session_closed); Ctrl-C stops it.

When the connection drops, the server restarts or shuts down, or the
stream is cut off for reading too slowly, the watch reconnects with
backoff and resumes where it was: no update is printed twice or skipped
(a line on stderr says so); a server that does not answer at the start
fails the watch at once. After --retries failed reconnections in a row,
or an end it cannot resume from, it exits 1 and says how to go on:
--start-revision N --incarnation ID resumes a watch from revision N of the
session incarnation ID (both printed by the watch that ended; see README
"Incarnations"). A resume whose history is gone (compacted, or the session
was created again) is refused; --resnapshot prints a fresh snapshot
(initial values) instead.

--batched uses the batched RPC (WatchVariablesBatched: many updates per
message, for high rates); the lines printed are the same. --view value
asks for slim updates (no constraints, metadata or creation fields: the
lines are the same, --json shows less). --coalesce lets
the server merge changes of one variable that wait to be sent: the line
says how many changes it stands for.

--filter runs the stream's updates through a chain of the server's filter
plugins, in the order given, each with its own params:
--filter deadband:threshold=0.5 --filter scale:a=1.8,b=32. A filtered
watch cannot resume (the server refuses start_revision with filters).

--json prints one JSON object per update instead (the VariableUpdate
message in the proto JSON mapping, .proto field names, 64-bit integers as
strings).`,
		nargs: atLeast(1),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			wf := addWatchFlags(fs)
			asJSON := fs.Bool("json", false, "print one JSON object per update")
			return func(args []string) error {
				req, opts, err := wf.request(args[0], args[1:])
				if err != nil {
					return err
				}
				print := func(u *pb.VariableUpdate) error {
					_, err := fmt.Fprintln(e.stdout, formatUpdate(u))
					return err
				}
				if *asJSON {
					print = func(u *pb.VariableUpdate) error { return printJSON(e.stdout, u) }
				}
				return e.watch(cf, req, opts, print)
			}
		},
	}
}

// watchFlags are the flags that shape a watch request and its resuming.
type watchFlags struct {
	pattern       string
	initial       bool
	heartbeat     time.Duration
	filters       []*pb.FilterSpec
	startRevision *int64
	incarnation   string
	batched       bool
	coalesce      bool
	resnapshot    bool
	retries       int
	maxBackoff    time.Duration
	view          pb.View
}

func addWatchFlags(fs *flag.FlagSet) *watchFlags {
	wf := &watchFlags{}
	fs.StringVar(&wf.pattern, "pattern", "", "also watch variables whose name matches this `glob`")
	fs.BoolVar(&wf.initial, "initial", false, "print the current values first")
	fs.DurationVar(&wf.heartbeat, "heartbeat", 0, "heartbeat `interval` (default: the server's; at least 50ms)")
	fs.Func("filter", "add a server filter to the stream's chain: `name[:key=value,...]` (repeatable, in order)", func(v string) error {
		f, err := parseFilterSpec(v)
		if err == nil {
			wf.filters = append(wf.filters, f)
		}
		return err
	})
	fs.Func("start-revision", "resume: print every change after revision `N`, then go live (0: from the session's first revision)", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("want a revision (an integer, 0 or more), got %q", v)
		}
		wf.startRevision = &n
		return nil
	})
	fs.StringVar(&wf.incarnation, "incarnation", "", "the session incarnation `id` the watch expects (with --start-revision: the one the revision belongs to); another is refused")
	fs.BoolVar(&wf.batched, "batched", false, "use the batched RPC (many updates per message, for high rates)")
	fs.BoolVar(&wf.coalesce, "coalesce", false, "let the server merge waiting changes of a variable into the latest")
	fs.BoolVar(&wf.resnapshot, "resnapshot", false, "when the history to resume from is gone, print a fresh snapshot instead of exiting")
	fs.IntVar(&wf.retries, "retries", 30, "give up after `N` failed reconnections in a row (0: never give up)")
	fs.DurationVar(&wf.maxBackoff, "max-backoff", 2*time.Second, "longest `wait` between reconnections (waits start at 25ms and double)")
	fs.Func("view", "what each update carries of its variable: `full` (default) or value (id, name, value, old value, version, revision, source, time: smaller, for high rates)", func(v string) error {
		switch v {
		case "full":
			wf.view = pb.View_VIEW_FULL
		case "value":
			wf.view = pb.View_VIEW_VALUE
		default:
			return fmt.Errorf("want full or value, got %q", v)
		}
		return nil
	})
	return wf
}

// request builds the watch request and the resuming options of the flags.
func (wf *watchFlags) request(session string, vars []string) (*pb.WatchVariablesRequest, vwclient.WatchOptions, error) {
	var opts vwclient.WatchOptions
	switch {
	case wf.heartbeat < 0:
		return nil, opts, usagef("--heartbeat must not be negative")
	case wf.startRevision != nil && wf.initial:
		return nil, opts, usagef("--start-revision resumes a watch and --initial starts one: give one of them")
	case wf.retries < 0:
		return nil, opts, usagef("--retries must not be negative")
	case wf.maxBackoff <= 0:
		return nil, opts, usagef("--max-backoff must be positive")
	case wf.view == pb.View_VIEW_VALUE && wf.batched:
		return nil, opts, usagef("--view value is served on the multiplexed Watch stream, not with --batched")
	}
	req := &pb.WatchVariablesRequest{
		SessionId:            session,
		VariableIdentifiers:  vars,
		Pattern:              wf.pattern,
		IncludeInitialValues: wf.initial,
		Filters:              wf.filters,
		StartRevision:        wf.startRevision,
		Incarnation:          wf.incarnation,
		Coalesce:             wf.coalesce,
	}
	if wf.heartbeat > 0 {
		req.HeartbeatInterval = durationpb.New(wf.heartbeat)
	}
	opts = vwclient.WatchOptions{Batched: wf.batched, Heartbeats: true, Resnapshot: wf.resnapshot,
		MaxAttempts: wf.retries, MaxBackoff: wf.maxBackoff, View: wf.view}
	return req, opts, nil
}

// watch streams updates to print until the stream ends or e.ctx is
// canceled (Ctrl-C), which is a normal end. The Go client's Watch does
// the reconnecting and resuming; this says so on stderr, and when the
// watch ends for good, says where to go on from.
func (e *env) watch(cf *clientFlags, req *pb.WatchVariablesRequest, opts vwclient.WatchOptions, print func(*pb.VariableUpdate) error) error {
	c, err := e.dial(cf)
	if err != nil {
		return err
	}
	defer c.Close()
	// Fail fast when nothing answers at all (no server, a TLS mismatch, a
	// refused token): reconnecting is for a server that goes away, not
	// for one that was never there.
	ctx, cancel := c.call()
	_, err = c.Ping(ctx, &pb.PingRequest{Message: "watch"})
	cancel()
	switch {
	case err != nil && e.ctx.Err() != nil:
		return nil
	case err != nil:
		return c.err(err)
	}
	w := c.Watch(e.ctx, req, opts)
	defer w.Close()
	// positioned: the watch knows a revision it is complete up to, so a
	// resume point is worth printing.
	positioned := req.StartRevision != nil
	var printed int64 // the revision of the last change printed
	resumes := 0
	for {
		before := w.Revision()
		u, err := w.Next()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil && e.ctx.Err() != nil:
			return nil
		case err != nil:
			return e.watchEnded(c, w, req, positioned, printed, err)
		}
		if n := w.Resumes(); n != resumes {
			resumes = n
			if positioned && (u.GetUpdateType() == "initial_value" || u.GetUpdateType() == "initial_values_complete") {
				fmt.Fprintf(e.stderr, "varwatch: reconnected; the history after rev=%d is gone (compacted, or the session was created again): a fresh snapshot follows\n", before)
			} else {
				fmt.Fprintf(e.stderr, "varwatch: reconnected; resumed after rev=%d, nothing missed\n", before)
			}
		}
		switch u.GetUpdateType() {
		case "heartbeat", "initial_values_complete":
			positioned = true
		case "initial_value", "session_closed":
		default:
			printed = u.GetRevision()
		}
		if err := print(u); err != nil {
			return err
		}
	}
}

// watchEnded prints the error a watch ended with, then how to go on: the
// revision and incarnation to resume from when the end is one a resume
// gets past (the server stayed away, or the stream was cut off), a fresh
// watch when the history is gone. It decides by status code and the
// error's type, never by message text.
func (e *env) watchEnded(c *client, w *vwclient.Watch, req *pb.WatchVariablesRequest, positioned bool, printed int64, err error) error {
	reason, _ := vwclient.Reason(err)
	var hint string
	switch {
	case !positioned:
	case resumableEnd(err, reason):
		hint = fmt.Sprintf("every change up to rev=%d was printed; to resume, run the same watch with --start-revision %d", w.Revision(), w.Revision())
		if inc := w.Incarnation(); inc != "" {
			hint += " --incarnation " + inc
		}
		if printed > w.Revision() {
			// Whether all of the last revision arrived is unknown until a
			// later one (or a heartbeat) does: an atomic set's changes
			// share it.
			hint += fmt.Sprintf(" (rev=%d was printed, perhaps not all of it: its lines may come again)", printed)
		}
	case errors.Is(err, vwclient.ErrIncarnationChanged), reason == reasonCompacted:
		hint = fmt.Sprintf("the history after rev=%d is gone (compacted, or the session was created again): watch again with --initial, or add --resnapshot", w.Revision())
	case len(req.GetFilters()) > 0 && (reason == reasonUnimplemented || reason == reasonFilterFailed):
		hint = "a filtered watch cannot resume: watch again with --initial"
	}
	return &hintedError{err: c.err(err), hint: hint}
}

// The server's ErrorInfo reasons a watch's end is told by (README "Error
// codes"; the server's grpcapi.Reason*).
const (
	reasonShuttingDown       = "SHUTTING_DOWN"
	reasonSlowConsumer       = "SLOW_CONSUMER"
	reasonStorageUnavailable = "STORAGE_UNAVAILABLE"
	reasonCompacted          = "REVISION_COMPACTED"
	reasonUnimplemented      = "UNIMPLEMENTED"
	reasonFilterFailed       = "FILTER_FAILED"
)

// resumableEnd reports whether a watch that ended with err, whose
// ErrorInfo reason is reason, can be resumed from its last revision: the
// server shut down, cut it off for reading slowly, or could not write its
// log; or no server decided the end (no reason: the connection broke, or
// the retries ran out against a server that was gone).
func resumableEnd(err error, reason string) bool {
	switch reason {
	case reasonShuttingDown, reasonSlowConsumer, reasonStorageUnavailable:
		return true
	case "":
		code := status.Code(err)
		return code == codes.Unavailable || code == codes.DeadlineExceeded
	}
	return false
}

// hintedError is an error plus a line that tells what to do about it,
// which Run prints after the error.
type hintedError struct {
	err  error
	hint string
}

func (h *hintedError) Error() string { return h.err.Error() }
func (h *hintedError) Unwrap() error { return h.err }

// parseFilterSpec parses a --filter of watch: name[:key=value,...].
func parseFilterSpec(v string) (*pb.FilterSpec, error) {
	name, params, _ := strings.Cut(v, ":")
	if name == "" {
		return nil, fmt.Errorf("%q: want name[:key=value,...]", v)
	}
	f := &pb.FilterSpec{Name: name}
	if params == "" {
		return f, nil
	}
	f.Params = map[string]string{}
	for _, kv := range strings.Split(params, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: param %q: want key=value", v, kv)
		}
		f.Params[k] = val
	}
	return f, nil
}
