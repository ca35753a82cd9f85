package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// valueForms documents parseValue's text forms in --help.
const valueForms = `Values by type: float 21.5; integer 42; string any text; boolean true or
false; choice and module as is; embedding 0.1,0.2,0.3; tensor
DTYPE:SHAPE:DATA with DATA a [number,list] or base64 little-endian bytes,
e.g. float32:2,2:[1,2,3,4] (SHAPE empty for a scalar: float64::[1.5]).
Negative numbers need no "--": varwatch set demo temperature -3.`

// optional is a flag that records whether it was given.
type optional struct{ value *string }

func optionalFlag(fs *flag.FlagSet, name, usage string) *optional {
	o := &optional{}
	fs.Func(name, usage, func(s string) error { o.value = &s; return nil })
	return o
}

// int64 parses the flag's value; name is for the error message.
func (o *optional) int64(name string) (*int64, error) {
	if o.value == nil {
		return nil, nil
	}
	i, err := strconv.ParseInt(*o.value, 10, 64)
	if err != nil {
		return nil, usagef("--%s %q is not an integer", name, *o.value)
	}
	return &i, nil
}

func (o *optional) float64(name string) (*float64, error) {
	if o.value == nil {
		return nil, nil
	}
	f, err := strconv.ParseFloat(*o.value, 64)
	if err != nil {
		return nil, usagef("--%s %q is not a number", name, *o.value)
	}
	return &f, nil
}

func registerCommand() *command {
	return &command{
		name:    "register",
		args:    "SESSION NAME TYPE VALUE",
		summary: "register a typed variable",
		doc: `Registers a variable NAME of TYPE (float, integer, string, boolean,
choice, module, embedding or tensor) with the initial VALUE, and prints it.
Names start with a letter or '_' and hold letters, digits and _ . : / -.
Constraints are checked now and on every set; one that does not fit the
type is refused (INVALID_ARGUMENT). --min and --max bound floats and
integers alike.

` + valueForms,
		nargs: exactly(4),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			minF := optionalFlag(fs, "min", "smallest allowed `number` (float, integer)")
			maxF := optionalFlag(fs, "max", "largest allowed `number` (float, integer)")
			minLen := optionalFlag(fs, "min-length", "shortest allowed length in characters, `N` (string)")
			maxLen := optionalFlag(fs, "max-length", "longest allowed length in characters, `N` (string)")
			pattern := fs.String("pattern", "", "RE2 `regexp` the whole value must match (string)")
			choices := fs.String("choices", "", "allowed values, comma-separated: `a,b,c` (choice; required)")
			modules := fs.String("modules", "", "allowed module names, comma-separated: `a,b` (module)")
			dims := fs.Int("dimensions", 0, "exact number of elements, `N` (embedding)")
			shape := fs.String("shape", "", "exact shape, -1 for any size in a dimension: `2,-1` (tensor)")
			meta := addMetaFlag(fs, "of the variable")
			asJSON := fs.Bool("json", false, "print the variable as one JSON object")
			return func(args []string) error {
				session, name := args[0], args[1]
				typ, err := parseType(args[2])
				if err != nil {
					return usagef("%v", err)
				}
				value, err := parseValue(typ, args[3])
				if err != nil {
					return usagef("%v", err)
				}
				c := &pb.Constraints{Pattern: *pattern, Dimensions: int32(*dims)}
				if c.Choices, err = splitList(*choices); err != nil {
					return usagef("--choices: %v", err)
				}
				if c.AllowedModules, err = splitList(*modules); err != nil {
					return usagef("--modules: %v", err)
				}
				if c.Shape, err = parseInts(*shape); err != nil {
					return usagef("--shape: %v", err)
				}
				if typ == pb.VariableType_VARIABLE_TYPE_INTEGER {
					if c.MinInteger, err = minF.int64("min"); err != nil {
						return err
					}
					if c.MaxInteger, err = maxF.int64("max"); err != nil {
						return err
					}
				} else {
					if c.Min, err = minF.float64("min"); err != nil {
						return err
					}
					if c.Max, err = maxF.float64("max"); err != nil {
						return err
					}
				}
				if c.MinLength, err = minLen.int64("min-length"); err != nil {
					return err
				}
				if c.MaxLength, err = maxLen.int64("max-length"); err != nil {
					return err
				}
				return e.unary(cf, func(ctx context.Context, cl *client) error {
					resp, err := cl.RegisterVariable(ctx, &pb.RegisterVariableRequest{
						SessionId: session, Name: name, Type: typ, InitialValue: value, Constraints: c, Metadata: meta,
					})
					if err != nil {
						return err
					}
					if *asJSON {
						return printJSON(e.stdout, resp.GetVariable())
					}
					fmt.Fprint(e.stdout, "registered ")
					printVariable(e.stdout, resp.GetVariable())
					return nil
				})
			}
		},
	}
}

func setCommand() *command {
	return &command{
		name:    "set",
		args:    "SESSION (VAR VALUE | -)",
		summary: "set a variable, or many from stdin",
		doc: `Sets variable VAR (a name or an id) to VALUE and prints the result. The
variable is read first to learn its type, which says how VALUE is parsed.
With --expect-version, the set applies only if the variable's version is
still N (ABORTED otherwise, naming the current version).

With - instead of VAR VALUE, reads lines "VAR VALUE" from stdin (VALUE is
the rest of the line; blank lines and lines starting with # are skipped)
and writes them in order over one write stream, many per request, without
waiting for each answer. The session's variables are listed once to learn
their types; with --create TYPE a name the session does not have is
created with that type by its first write (an upsert). A line that fails
is reported on stderr with its line number and the others go on; at the
end it prints how many were written and the last revision, and exits 1 if
any failed.

` + valueForms,
		nargs: between(2, 3),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			expect := optionalFlag(fs, "expect-version", "apply only if the variable's version is `N`")
			source := fs.String("source", "cli", "who makes the change, shown to watchers")
			meta := addMetaFlag(fs, "sent with the update and merged into the variable's")
			asJSON := fs.Bool("json", false, "print the variable as one JSON object")
			create := fs.String("create", "", "with -: create missing variables with this `TYPE` (float, integer, ...)")
			return func(args []string) error {
				if len(args) == 2 {
					if args[1] != "-" {
						return usagef("set: wrong number of arguments (2): give VAR VALUE, or - to read lines from stdin")
					}
					return e.setFromStdin(cf, args[0], *create, *source, meta)
				}
				session, ident, text := args[0], args[1], args[2]
				version, err := expect.int64("expect-version")
				if err != nil {
					return err
				}
				return e.unary(cf, func(ctx context.Context, c *client) error {
					cur, err := c.GetVariable(ctx, &pb.GetVariableRequest{SessionId: session, VariableIdentifier: ident})
					if err != nil {
						return err
					}
					value, err := parseValue(cur.GetVariable().GetType(), text)
					if err != nil {
						return usagef("%v", err)
					}
					resp, err := c.SetVariable(ctx, &pb.SetVariableRequest{
						SessionId: session, VariableIdentifier: ident, Value: value,
						Metadata: meta, Source: *source, ExpectedVersion: version,
					})
					if err != nil {
						return err
					}
					if *asJSON {
						return printJSON(e.stdout, resp.GetVariable())
					}
					fmt.Fprintln(e.stdout, formatVariable(resp.GetVariable()))
					return nil
				})
			}
		},
	}
}

func getCommand() *command {
	return &command{
		name:    "get",
		args:    "SESSION VAR...",
		summary: "show variables",
		doc: `Shows the variables named (by name or id), all read at one revision:
value, type, id, version, the revision of the last change, who made it,
constraints and metadata. Any VAR that does not exist is an error
(NOT_FOUND) after the others are shown.`,
		nargs: atLeast(2),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			asJSON := fs.Bool("json", false, "print one JSON object per variable")
			return func(args []string) error {
				return e.unary(cf, func(ctx context.Context, c *client) error {
					resp, err := c.GetVariables(ctx, &pb.GetVariablesRequest{SessionId: args[0], VariableIdentifiers: args[1:]})
					if err != nil {
						return err
					}
					for _, v := range resp.GetVariables() {
						if *asJSON {
							if err := printJSON(e.stdout, v); err != nil {
								return err
							}
						} else {
							printVariable(e.stdout, v)
						}
					}
					if missing := resp.GetMissing(); len(missing) > 0 {
						return status.Errorf(codes.NotFound, "no variable %s in session %q", quoteAll(missing), args[0])
					}
					return nil
				})
			}
		},
	}
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func listCommand() *command {
	return &command{
		name:    "list",
		args:    "SESSION [PATTERN]",
		summary: "list variables, optionally matching a glob",
		doc: `Lists a session's variables sorted by name, or those whose name matches
the glob PATTERN: '*' any run of characters, '?' one character, '[a-z]' a
class, '\' escapes; the whole name must match. Quote it for the shell.`,
		nargs: between(1, 2),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			asJSON := fs.Bool("json", false, "print one JSON object per variable")
			return func(args []string) error {
				req := &pb.ListVariablesRequest{SessionId: args[0]}
				if len(args) > 1 {
					req.Pattern = args[1]
				}
				return e.unary(cf, func(ctx context.Context, c *client) error {
					resp, err := c.ListVariables(ctx, req)
					if err != nil {
						return err
					}
					if *asJSON {
						for _, v := range resp.GetVariables() {
							if err := printJSON(e.stdout, v); err != nil {
								return err
							}
						}
						return nil
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tID\tTYPE\tVALUE\tVERSION\tREV")
					for _, v := range resp.GetVariables() {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", v.GetName(), v.GetId(), typeName(v.GetType()),
							formatValue(v.GetValue()), v.GetVersion(), v.GetModRevision())
					}
					return tw.Flush()
				})
			}
		},
	}
}

func deleteCommand() *command {
	return &command{
		name:    "delete",
		args:    "SESSION VAR",
		summary: "delete a variable",
		doc:     "Deletes variable VAR (a name or an id). Its watchers get variable_deleted.",
		nargs:   exactly(2),
		setup: func(e *env, fs *flag.FlagSet) func([]string) error {
			cf := e.addClientFlags(fs)
			return func(args []string) error {
				return e.unary(cf, func(ctx context.Context, c *client) error {
					resp, err := c.DeleteVariable(ctx, &pb.DeleteVariableRequest{SessionId: args[0], VariableIdentifier: args[1]})
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "deleted %s (rev=%d)\n", args[1], resp.GetRevision())
					return nil
				})
			}
		},
	}
}
