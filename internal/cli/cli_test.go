package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// TestTour is the README's two-terminal tour: a watcher in one terminal
// sees, as JSON and as text, the set made from the other.
func TestTour(t *testing.T) {
	s := startServer(t)
	if got := s.mustRun(t, "session", "create", "--id", "demo"); got != "demo\n" {
		t.Fatalf("session create printed %q", got)
	}
	got := s.mustRun(t, "register", "demo", "temperature", "float", "21.5", "--min", "-40", "--max", "60")
	if want := "registered temperature = 21.5 (float, id=1, version=1, rev=1)\n  constraints: min=-40 max=60\n"; got != want {
		t.Fatalf("register printed %q, want %q", got, want)
	}

	text := s.start(t, "watch", "demo", "--initial")
	text.stdout.waitFor(t, "rev=1 initial_values_complete\n")
	js := s.start(t, "watch", "demo", "temperature", "--json", "--initial")
	js.stdout.waitFor(t, `"update_type":"initial_values_complete"`)

	if got := s.mustRun(t, "set", "demo", "temperature", "22"); got != "temperature = 22 (float, id=1, version=2, rev=2, source=cli)\n" {
		t.Fatalf("set printed %q", got)
	}
	out := text.stdout.waitFor(t, "rev=2 value_change")
	if want := "rev=1 initial_value temperature 21.5\nrev=1 initial_values_complete\nrev=2 value_change temperature 21.5 -> 22 (source=cli)\n"; out != want {
		t.Fatalf("watch printed %q, want %q", out, want)
	}

	js.stdout.waitFor(t, `"update_type":"value_change"`)
	lines := strings.Split(strings.TrimSpace(js.stdout.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("watch --json printed %d lines:\n%s", len(lines), js.stdout.String())
	}
	var change struct {
		VariableID string `json:"variable_id"`
		UpdateType string `json:"update_type"`
		Revision   string `json:"revision"`
		Source     string `json:"update_source"`
		Variable   struct {
			Name  string `json:"name"`
			Value struct {
				Float float64 `json:"float_value"`
			} `json:"value"`
		} `json:"variable"`
		Old struct {
			Float float64 `json:"float_value"`
		} `json:"old_value"`
	}
	if err := json.Unmarshal([]byte(lines[2]), &change); err != nil {
		t.Fatal(err)
	}
	if change.VariableID != "1" || change.UpdateType != "value_change" || change.Revision != "2" || change.Source != "cli" ||
		change.Variable.Name != "temperature" || change.Variable.Value.Float != 22 || change.Old.Float != 21.5 {
		t.Fatalf("value_change JSON %s decoded as %+v", lines[2], change)
	}

	// Deleting the session ends both watches normally.
	if got := s.mustRun(t, "session", "delete", "demo"); got != "deleted session demo (1 variable)\n" {
		t.Fatalf("session delete printed %q", got)
	}
	for _, w := range []*background{text, js} {
		if code := w.exit(t); code != 0 {
			t.Fatalf("watch exited %d: %s", code, w.stderr.String())
		}
	}
	if !strings.HasSuffix(text.stdout.String(), "rev=2 session_closed\n") {
		t.Fatalf("watch output does not end with session_closed:\n%s", text.stdout.String())
	}
}

func TestClientCommands(t *testing.T) {
	s := startServer(t)
	s.mustRun(t, "session", "create", "--id", "s1", "--ttl", "90m", "--meta", "owner=me")
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"register", "s1", "count", "integer", "-5", "--min", "-10", "--max", "10"},
			"registered count = -5 (integer, id=1, version=1, rev=1)\n  constraints: min=-10 max=10\n"},
		{[]string{"register", "s1", "mode", "choice", "eco", "--choices", "eco,boost", "--meta", "unit=none"},
			"registered mode = eco (choice, id=2, version=1, rev=2)\n  constraints: choices=eco,boost\n  metadata: unit=none\n"},
		{[]string{"register", "s1", "name", "string", "ab", "--min-length", "2", "--max-length", "8", "--pattern", "[a-z]+"},
			"registered name = \"ab\" (string, id=3, version=1, rev=3)\n  constraints: min-length=2 max-length=8 pattern=\"[a-z]+\"\n"},
		{[]string{"register", "s1", "on", "bool", "false"}, "registered on = false (boolean, id=4, version=1, rev=4)\n"},
		{[]string{"register", "s1", "model", "module", "torch.nn", "--modules", "torch.nn,jax"},
			"registered model = torch.nn (module, id=5, version=1, rev=5)\n  constraints: modules=torch.nn,jax\n"},
		{[]string{"register", "s1", "vec", "embedding", "0.5,-1,2", "--dimensions", "3"},
			"registered vec = [0.5,-1,2] (embedding, id=6, version=1, rev=6)\n  constraints: dimensions=3\n"},
		{[]string{"register", "s1", "grid", "tensor", "int16:2,2:[1,-2,3,4]", "--shape", "2,-1"},
			"registered grid = int16:2,2:[1,-2,3,4] (tensor, id=7, version=1, rev=7)\n  constraints: shape=2,-1\n"},
		{[]string{"set", "s1", "count", "-7", "--source", "me"}, "count = -7 (integer, id=1, version=2, rev=8, source=me)\n"},
		{[]string{"set", "s1", "2", "boost", "--expect-version", "1"}, "mode = boost (choice, id=2, version=2, rev=9, source=cli)\n"},
		{[]string{"set", "s1", "on", "true"}, "on = true (boolean, id=4, version=2, rev=10, source=cli)\n"},
		{[]string{"set", "s1", "vec", "[1, 2, 3]"}, "vec = [1,2,3] (embedding, id=6, version=2, rev=11, source=cli)\n"},
		{[]string{"set", "s1", "grid", "int16:2,1:AQACAA=="}, "grid = int16:2,1:[1,2] (tensor, id=7, version=2, rev=12, source=cli)\n"},
		{[]string{"get", "s1", "count", "mode"},
			"count = -7 (integer, id=1, version=2, rev=8, source=me)\n  constraints: min=-10 max=10\n" +
				"mode = boost (choice, id=2, version=2, rev=9, source=cli)\n  constraints: choices=eco,boost\n  metadata: unit=none\n"},
		{[]string{"list", "s1", "m*"},
			"NAME   ID  TYPE    VALUE     VERSION  REV\nmode   2   choice  boost     2        9\nmodel  5   module  torch.nn  1        5\n"},
		{[]string{"delete", "s1", "on"}, "deleted on (rev=13)\n"},
		{[]string{"list", "s1", "o*"}, "NAME  ID  TYPE  VALUE  VERSION  REV\n"},
		{[]string{"session", "list"}, ""}, // checked below
	}
	for _, step := range steps {
		t.Run(strings.Join(step.args, " "), func(t *testing.T) {
			got := s.mustRun(t, step.args...)
			if step.want != "" && got != step.want {
				t.Fatalf("printed\n%s\nwant\n%s", got, step.want)
			}
		})
	}

	out := s.mustRun(t, "session", "get", "s1")
	for _, want := range []string{"id           s1\n", "ttl          1h30m\n", "variables    6\n", "revision     13\n", "incarnation  ", "metadata     owner=me\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("session get output lacks %q:\n%s", want, out)
		}
	}
	if out := s.mustRun(t, "session", "list"); !strings.HasPrefix(out, "ID  VARIABLES  REVISION  EXPIRES\ns1  6          13        ") {
		t.Errorf("session list printed:\n%s", out)
	}
	if out := s.mustRun(t, "get", "s1", "count", "--json"); !strings.HasPrefix(out, `{"id":"1","name":"count","type":"VARIABLE_TYPE_INTEGER","value":{"integer_value":"-7"}`) {
		t.Errorf("get --json printed %s", out)
	}
	if out := s.mustRun(t, "ping"); !strings.HasPrefix(out, "pong from "+s.addr) {
		t.Errorf("ping printed %q", out)
	}
}

// TestClientErrors checks exit codes and messages: 1 with the gRPC code
// for a refused request, 2 for a wrong command line; nothing on stdout.
func TestClientErrors(t *testing.T) {
	s := startServer(t)
	s.mustRun(t, "session", "create", "--id", "s")
	s.mustRun(t, "register", "s", "t", "float", "1", "--max", "10")
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"session", "get", "nope"}, 1, `varwatch: NOT_FOUND: session "nope" not found`},
		{[]string{"get", "s", "t", "nope"}, 1, `varwatch: NOT_FOUND: no variable "nope" in session "s"`},
		{[]string{"set", "s", "nope", "1"}, 1, `varwatch: NOT_FOUND: no variable "nope" in session "s"`},
		{[]string{"set", "s", "t", "11"}, 1, "varwatch: INVALID_ARGUMENT: value 11 violates constraint max 10"},
		{[]string{"set", "s", "t", "2", "--expect-version", "5"}, 1, "varwatch: ABORTED: version conflict on \"t\": expected version 5, current version is 1"},
		{[]string{"register", "s", "t", "float", "1"}, 1, "varwatch: ALREADY_EXISTS:"},
		{[]string{"register", "s", "c", "choice", "a"}, 1, "varwatch: INVALID_ARGUMENT: choice variables need the choices constraint"},
		{[]string{"register", "s", "i", "integer", "1", "--pattern", "x"}, 1, "varwatch: INVALID_ARGUMENT: constraint pattern does not apply to integer variables"},
		{[]string{"list", "s", "[x"}, 1, "varwatch: INVALID_ARGUMENT: glob"},
		{[]string{"watch", "nope"}, 1, `varwatch: NOT_FOUND: session "nope" not found`},
		{[]string{"set", "s", "t", "hot"}, 2, `varwatch: "hot" is not a valid float value: invalid syntax`},
		{[]string{"register", "s", "x", "colour", "red"}, 2, `varwatch: unknown type "colour"`},
		{[]string{"register", "s", "x", "integer", "1", "--min", "0.5"}, 2, `varwatch: --min "0.5" is not an integer`},
		{[]string{"register", "s", "x", "tensor", "float32:2:[1,2"}, 2, "not a valid tensor value"},
		{[]string{"set", "s", "t"}, 2, "varwatch: set: wrong number of arguments (2): give VAR VALUE, or - to read lines from stdin\nusage: varwatch set SESSION (VAR VALUE | -) [flags]\n"},
		{[]string{"set", "s"}, 2, "varwatch: set: wrong number of arguments (1)\nusage: varwatch set SESSION (VAR VALUE | -) [flags]\n"},
		{[]string{"get", "s", "t", "--nope"}, 2, "varwatch: flag provided but not defined: -nope"},
		{[]string{"frobnicate"}, 2, `varwatch: unknown command "frobnicate"`},
		{[]string{"session"}, 2, "varwatch: session needs a subcommand"},
		{[]string{"session", "create", "--meta", "novalue"}, 2, `want key=value, got "novalue"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := s.run(tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) || r.stdout != "" && tc.args[0] != "get" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, tc.code, tc.msg)
			}
		})
	}
}

func TestServerUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	// A watch fails as fast as ping: it reconnects to a server that went
	// away, not to one that never answered (a watch still retrying when
	// the context ends would exit 0 without the message).
	for _, args := range [][]string{{"ping"}, {"watch", "s"}} {
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		code := Run(ctx, append(args, "--server", addr, "--timeout", "5s"), &stdout, &stderr)
		cancel()
		if code != 1 || !strings.Contains(stderr.String(), "varwatch: UNAVAILABLE:") || !strings.Contains(stderr.String(), "is 'varwatch serve' running at "+addr) {
			t.Fatalf("%s: exit %d, stderr %q", args[0], code, stderr.String())
		}
	}
}

// TestHelp checks that every command answers --help with its usage line on
// stdout and exit 0.
func TestHelp(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(strings.Fields(c.name), "--help")
			if code := Run(context.Background(), args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
			if out := stdout.String(); !strings.HasPrefix(out, "usage: varwatch "+c.name) || !strings.Contains(out, strings.TrimSpace(c.doc)[:20]) {
				t.Fatalf("help printed:\n%s", out)
			}
			if c.name != "serve" && c.name != "version" && !strings.Contains(stdout.String(), "--server address") {
				t.Fatalf("help lacks --server:\n%s", stdout.String())
			}
		})
	}
	var stdout bytes.Buffer
	if code := Run(context.Background(), []string{"help"}, &stdout, &stdout); code != 0 || !strings.Contains(stdout.String(), "session create") {
		t.Fatalf("help: exit %d\n%s", code, stdout.String())
	}
	stdout.Reset()
	if code := Run(context.Background(), nil, &stdout, &stdout); code != 2 || !strings.Contains(stdout.String(), "no command given") {
		t.Fatalf("no args: exit %d\n%s", code, stdout.String())
	}
}

func TestServeErrors(t *testing.T) {
	s := startServer(t)
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"serve", "--log-level", "loud"}, 2, `unknown --log-level "loud"`},
		{[]string{"serve", "--heartbeat-interval", "0s"}, 2, "--heartbeat-interval must be positive"},
		{[]string{"serve", "extra"}, 2, "wrong number of arguments"},
		{[]string{"serve", "--listen", s.addr}, 1, "varwatch: listen on " + s.addr},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.msg)
			}
		})
	}
}

// TestServeShutdown stops serve while a watch runs and never brings it
// back: the watch tries to reconnect, gives up after --retries, exits 1
// and says which revision and incarnation to resume from; serve exits 0.
func TestServeShutdown(t *testing.T) {
	s := startServer(t, "--heartbeat-interval", "50ms")
	s.mustRun(t, "session", "create", "--id", "s")
	s.mustRun(t, "register", "s", "x", "integer", "1")
	inc := incarnationOf(t, s, "s")
	w := s.start(t, "watch", "s", "--retries", "2", "--max-backoff", "50ms")
	w.stdout.waitFor(t, "rev=1 heartbeat") // the default comes from --heartbeat-interval
	s.stop(t)
	if code := w.exit(t); code != 1 {
		t.Fatalf("watch exited %d, want 1", code)
	}
	msg := w.stderr.String()
	if want := "varwatch: every change up to rev=1 was printed; to resume, run the same watch with --start-revision 1 --incarnation " + inc + "\n"; !strings.HasPrefix(msg, "varwatch: UNAVAILABLE: ") || !strings.HasSuffix(msg, want) {
		t.Fatalf("watch stderr %q, want UNAVAILABLE and then %q", msg, want)
	}
	log := s.stderr.String()
	for _, want := range []string{`"@message":"shutting down"`, `"@message":"stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("serve log lacks %s:\n%s", want, log)
		}
	}
}
