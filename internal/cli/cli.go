// Package cli is the varwatch command line: the server (serve) and the
// client subcommands a person uses from a shell. cmd/varwatch only wires
// it to the process (arguments, standard streams, signals), so tests drive
// every command through Run.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Exit codes of Run.
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed (an RPC error, a server that would not start)
	exitUsage = 2 // the command line is wrong
)

// Run runs the varwatch command line args (without the program name) and
// returns the process exit code: 0 on success, 1 when the command failed,
// 2 for a usage error. Errors are printed to stderr as "varwatch: ...".
// Canceling ctx stops serve and watch cleanly (exit 0).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	err := e.dispatch(args)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	}
	fmt.Fprintf(stderr, "varwatch: %v\n", err)
	var h *hintedError
	if errors.As(err, &h) && h.hint != "" {
		fmt.Fprintf(stderr, "varwatch: %s\n", h.hint)
	}
	var u *usageError
	if errors.As(err, &u) {
		if u.usage != "" {
			fmt.Fprintf(stderr, "usage: %s\nRun 'varwatch %s --help' for details.\n", u.usage, u.cmd)
		}
		return exitUsage
	}
	return exitError
}

// env is what a command runs with.
type env struct {
	ctx            context.Context
	stdin          io.Reader // what "varwatch set SESSION -" reads
	stdout, stderr io.Writer
	// server is the --server given before the subcommand, if any.
	server string
}

// command is one subcommand.
type command struct {
	name    string // "session create"
	args    string // positional arguments, for the usage line
	summary string // one line, for the command list
	doc     string // paragraphs for --help
	// flags declares the command's flags on fs and returns the function
	// that runs it with the positional arguments.
	setup func(e *env, fs *flag.FlagSet) func(args []string) error
	// nargs checks the number of positional arguments; nil accepts any.
	nargs func(n int) bool
}

func exactly(k int) func(int) bool { return func(n int) bool { return n == k } }
func atLeast(k int) func(int) bool { return func(n int) bool { return n >= k } }
func between(lo, hi int) func(int) bool {
	return func(n int) bool { return lo <= n && n <= hi }
}

// commands lists every subcommand, in the order the help shows them.
func commands() []*command {
	return []*command{
		serveCommand(),
		pingCommand(),
		sessionCreateCommand(),
		sessionGetCommand(),
		sessionListCommand(),
		sessionDeleteCommand(),
		registerCommand(),
		setCommand(),
		getCommand(),
		listCommand(),
		deleteCommand(),
		watchCommand(),
		versionCommand(),
	}
}

const rootDoc = `varwatch is a reactive variable server: clients create sessions, register
typed variables in them, set and read them, and watch them over streams
that never miss, duplicate or reorder an update.

Global flags (before the command):
  --server ADDR   server address for client commands (default $VARWATCH_SERVER,
                  else 127.0.0.1:50051; a host without a port means port 50051)
  --version       print the version and exit

Run 'varwatch COMMAND --help' for a command's arguments and flags.`

func (e *env) printRootUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: varwatch [--server ADDR] COMMAND [ARGS] [FLAGS]\n\n%s\n\nCommands:\n", rootDoc)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	_ = tw.Flush()
}

// dispatch parses the global flags, finds the subcommand and runs it.
func (e *env) dispatch(args []string) error {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		switch name {
		case "h", "help":
			e.printRootUsage(e.stdout)
			return flag.ErrHelp
		case "version":
			fmt.Fprintln(e.stdout, versionLine())
			return nil
		case "server":
			if !hasValue {
				if len(args) < 2 {
					return &usageError{msg: "flag --server needs a value"}
				}
				value, args = args[1], args[1:]
			}
			e.server = value
			args = args[1:]
		default:
			return &usageError{msg: fmt.Sprintf("unknown global flag %s (command flags go after the command)", args[0])}
		}
	}
	if len(args) == 0 {
		e.printRootUsage(e.stderr)
		return &usageError{msg: "no command given"}
	}
	if args[0] == "help" {
		if len(args) > 1 {
			return e.dispatch(append(args[1:], "--help"))
		}
		e.printRootUsage(e.stdout)
		return nil
	}

	var match *command
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			match, args = c, args[len(words):]
			break
		}
	}
	if match == nil {
		if group := groupCommands(args[0]); len(group) > 0 {
			return e.runGroup(args[0], group, args[1:])
		}
		return &usageError{msg: fmt.Sprintf("unknown command %q (run 'varwatch help' for the list)", args[0])}
	}
	return e.runCommand(match, args)
}

// groupCommands returns the commands whose name starts with the word
// group ("session": session create, session get, ...), or none.
func groupCommands(group string) []*command {
	var cmds []*command
	for _, c := range commands() {
		if words := strings.Fields(c.name); len(words) > 1 && words[0] == group {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// runGroup answers a command group given without a subcommand it knows:
// its help (exit 0) for --help, a usage error otherwise.
func (e *env) runGroup(group string, cmds []*command, args []string) error {
	var subs []string
	for _, c := range cmds {
		subs = append(subs, strings.Fields(c.name)[1])
	}
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			fmt.Fprintf(e.stdout, "usage: varwatch %s SUBCOMMAND [ARGS] [FLAGS]\n\nSubcommands:\n", group)
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 3, ' ', 0)
			for i, c := range cmds {
				fmt.Fprintf(tw, "  %s\t%s\n", subs[i], c.summary)
			}
			_ = tw.Flush()
			fmt.Fprintf(e.stdout, "\nRun 'varwatch %s SUBCOMMAND --help' for a subcommand's arguments and flags.\n", group)
			return flag.ErrHelp
		}
		return &usageError{msg: fmt.Sprintf("unknown subcommand %q of %s (want %s)", args[0], group, orList(subs)),
			usage: fmt.Sprintf("varwatch %s %s ...", group, strings.Join(subs, "|")), cmd: group}
	}
	return &usageError{msg: fmt.Sprintf("%s needs a subcommand: %s", group, orList(subs)),
		usage: fmt.Sprintf("varwatch %s %s ...", group, strings.Join(subs, "|")), cmd: group}
}

// orList spells words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func (e *env) runCommand(c *command, args []string) error {
	fs := flag.NewFlagSet("varwatch "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := c.setup(e, fs)
	usage := "varwatch " + c.name
	if c.args != "" {
		usage += " " + c.args
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		usage += " [flags]"
	}

	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(e.stdout, c, usage, fs)
		return err
	}
	if err != nil {
		return &usageError{msg: err.Error(), usage: usage, cmd: c.name}
	}
	if c.nargs != nil && !c.nargs(len(pos)) {
		return &usageError{msg: fmt.Sprintf("%s: wrong number of arguments (%d)", c.name, len(pos)), usage: usage, cmd: c.name}
	}
	err = run(pos)
	var u *usageError
	if errors.As(err, &u) && u.usage == "" {
		u.usage, u.cmd = usage, c.name
	}
	return err
}

// printCommandHelp prints a command's usage line, description and flags
// with their defaults, using the "--name" spelling.
func printCommandHelp(w io.Writer, c *command, usage string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", usage, strings.TrimSpace(c.doc))
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) == 0 {
		return
	}
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	fmt.Fprintf(w, "\nFlags:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range flags {
		name, text := flag.UnquoteUsage(f)
		spec := "--" + f.Name
		if name != "" {
			spec += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			text += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", spec, text)
	}
	_ = tw.Flush()
}

// parseInterspersed parses fs from args, allowing flags after positional
// arguments (varwatch set s temp 22 --source me). Arguments that look like
// negative numbers (-5, -0.5, -1,2 for embeddings) are positional, so
// values need no "--". After "--", everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		for len(args) > 0 && isNegativeNumber(args[0]) {
			pos, args = append(pos, args[0]), args[1:]
		}
		if len(args) > 0 && args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// isNegativeNumber reports whether s is a negative number rather than a
// flag: a dash then a digit or a dot (-5, -.5, -1e3, and the embedding
// -1,2), or anything else strconv reads as a float (-Inf, -inf,
// -infinity). No flag of varwatch is spelled like one.
func isNegativeNumber(s string) bool {
	if len(s) < 2 || s[0] != '-' {
		return false
	}
	if s[1] == '.' || '0' <= s[1] && s[1] <= '9' {
		return true
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// usageError is a wrong command line: exit code 2.
type usageError struct {
	msg   string
	usage string // the command's usage line, if known
	cmd   string // the command's name, for the --help hint
}

func (u *usageError) Error() string { return u.msg }

// usagef is a usage error about the arguments of c.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}
