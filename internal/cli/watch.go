package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

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

--filter runs the stream's updates through a chain of the server's filter
plugins, in the order given, each with its own params:
--filter deadband:threshold=0.5 --filter scale:a=1.8,b=32.

--json prints one JSON object per update instead (the VariableUpdate
message in the proto JSON mapping, .proto field names, 64-bit integers as
strings).`,
		nargs: atLeast(1),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			pattern := fs.String("pattern", "", "also watch variables whose name matches this `glob`")
			initial := fs.Bool("initial", false, "print the current values first")
			asJSON := fs.Bool("json", false, "print one JSON object per update")
			heartbeat := fs.Duration("heartbeat", 0, "heartbeat `interval` (default: the server's; at least 50ms)")
			var filters []*pb.FilterSpec
			fs.Func("filter", "add a server filter to the stream's chain: `name[:key=value,...]` (repeatable, in order)", func(v string) error {
				f, err := parseFilterSpec(v)
				if err == nil {
					filters = append(filters, f)
				}
				return err
			})
			return func(args []string) error {
				if *heartbeat < 0 {
					return usagef("--heartbeat must not be negative")
				}
				req := &pb.WatchVariablesRequest{
					SessionId:            args[0],
					VariableIdentifiers:  args[1:],
					Pattern:              *pattern,
					IncludeInitialValues: *initial,
					Filters:              filters,
				}
				if *heartbeat > 0 {
					req.HeartbeatInterval = durationpb.New(*heartbeat)
				}
				print := func(u *pb.VariableUpdate) error {
					_, err := fmt.Fprintln(e.stdout, formatUpdate(u))
					return err
				}
				if *asJSON {
					print = func(u *pb.VariableUpdate) error { return printJSON(e.stdout, u) }
				}
				return e.watch(cf, req, print)
			}
		},
	}
}

// watch streams updates to print until the stream ends or e.ctx is
// canceled (Ctrl-C), which is a normal end.
func (e *env) watch(cf *clientFlags, req *pb.WatchVariablesRequest, print func(*pb.VariableUpdate) error) error {
	c, err := e.dial(cf)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	stream, err := c.WatchVariables(ctx, req)
	if err != nil {
		return c.err(err)
	}
	for {
		u, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil && e.ctx.Err() != nil && status.Code(err) == codes.Canceled:
			return nil
		case err != nil:
			return c.err(err)
		}
		if err := print(u); err != nil {
			return err
		}
	}
}

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
