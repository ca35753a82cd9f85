package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// metaFlag collects repeated --meta k=v flags.
type metaFlag map[string]string

func (m metaFlag) String() string { return formatMap(m) }

func (m metaFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	m[k] = v
	return nil
}

func addMetaFlag(fs *flag.FlagSet, what string) metaFlag {
	m := metaFlag{}
	fs.Var(m, "meta", "metadata `key=value` "+what+" (repeatable)")
	return m
}

func pingCommand() *command {
	return &command{
		name:    "ping",
		summary: "check that the server answers",
		doc:     "Sends a Ping and prints the server's time and the round trip.",
		nargs:   exactly(0),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			return func([]string) error {
				return e.unary(cf, func(ctx context.Context, c *client) error {
					start := time.Now()
					resp, err := c.Ping(ctx, &pb.PingRequest{Message: "ping"})
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "pong from %s: server time %s, round trip %s\n", c.addr,
						formatTime(resp.GetServerTime()), time.Since(start).Round(time.Microsecond))
					return nil
				})
			}
		},
	}
}

func sessionCreateCommand() *command {
	return &command{
		name:    "session create",
		summary: "create a session and print its id",
		doc: `Creates a session and prints its id. With --id, an existing session of
that id is answered as it is (the call is idempotent). Sessions expire
after their TTL without use; any call naming a session, or a heartbeat,
counts as use.`,
		nargs: exactly(0),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			id := fs.String("id", "", "session `id` (default: the server generates one)")
			ttl := fs.Duration("ttl", 0, "session `TTL` (default: the server's --session-ttl)")
			meta := addMetaFlag(fs, "of the session")
			return func([]string) error {
				if *ttl < 0 {
					return usagef("--ttl must not be negative")
				}
				return e.unary(cf, func(ctx context.Context, c *client) error {
					req := &pb.InitializeSessionRequest{SessionId: *id, Metadata: meta}
					if *ttl > 0 {
						req.Ttl = durationpb.New(*ttl)
					}
					resp, err := c.InitializeSession(ctx, req)
					if err != nil {
						return err
					}
					fmt.Fprintln(e.stdout, resp.GetSession().GetId())
					return nil
				})
			}
		},
	}
}

func sessionGetCommand() *command {
	return &command{
		name:    "session get",
		args:    "ID",
		summary: "show a session",
		doc:     "Shows a session: times, TTL, variable count, latest revision, incarnation and metadata.",
		nargs:   exactly(1),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			asJSON := fs.Bool("json", false, "print the session as one JSON object")
			return func(args []string) error {
				return e.unary(cf, func(ctx context.Context, c *client) error {
					resp, err := c.GetSession(ctx, &pb.GetSessionRequest{SessionId: args[0]})
					if err != nil {
						return err
					}
					s := resp.GetSession()
					if *asJSON {
						return printJSON(e.stdout, s)
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
					fmt.Fprintf(tw, "id\t%s\n", s.GetId())
					fmt.Fprintf(tw, "created\t%s\n", formatTime(s.GetCreatedAt()))
					fmt.Fprintf(tw, "last used\t%s\n", formatTime(s.GetLastUsedAt()))
					fmt.Fprintf(tw, "expires\t%s\n", formatTime(s.GetExpiresAt()))
					fmt.Fprintf(tw, "ttl\t%s\n", formatDuration(s.GetTtl().AsDuration()))
					fmt.Fprintf(tw, "variables\t%d\n", s.GetVariableCount())
					fmt.Fprintf(tw, "revision\t%d\n", s.GetRevision())
					fmt.Fprintf(tw, "incarnation\t%s\n", s.GetIncarnation())
					if m := formatMap(s.GetMetadata()); m != "" {
						fmt.Fprintf(tw, "metadata\t%s\n", m)
					}
					return tw.Flush()
				})
			}
		},
	}
}

func sessionListCommand() *command {
	return &command{
		name:    "session list",
		summary: "list the live sessions",
		doc:     "Lists the live sessions, sorted by id.",
		nargs:   exactly(0),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			asJSON := fs.Bool("json", false, "print one JSON object per session")
			return func([]string) error {
				return e.unary(cf, func(ctx context.Context, c *client) error {
					resp, err := c.ListSessions(ctx, &pb.ListSessionsRequest{})
					if err != nil {
						return err
					}
					if *asJSON {
						for _, s := range resp.GetSessions() {
							if err := printJSON(e.stdout, s); err != nil {
								return err
							}
						}
						return nil
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tVARIABLES\tREVISION\tEXPIRES")
					for _, s := range resp.GetSessions() {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", s.GetId(), s.GetVariableCount(), s.GetRevision(), formatTime(s.GetExpiresAt()))
					}
					return tw.Flush()
				})
			}
		},
	}
}

func sessionDeleteCommand() *command {
	return &command{
		name:    "session delete",
		args:    "ID",
		summary: "delete a session and its variables",
		doc:     "Deletes a session and its variables. Its watchers get session_closed and their streams end.",
		nargs:   exactly(1),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			return func(args []string) error {
				return e.unary(cf, func(ctx context.Context, c *client) error {
					resp, err := c.CleanupSession(ctx, &pb.CleanupSessionRequest{SessionId: args[0]})
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "deleted session %s (%s)\n", args[0], plural(resp.GetVariablesDeleted(), "variable"))
					return nil
				})
			}
		},
	}
}

// plural is "1 variable", "2 variables".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
