package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/grpcapi"
	vwclient "github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// stdin is what Run gives commands as their standard input; tests replace
// it.
var stdin io.Reader = os.Stdin

// setFromStdin is "varwatch set SESSION -": every "VAR VALUE" line of
// stdin, written in order over one write stream (client.Writer).
func (e *env) setFromStdin(cf *clientFlags, session, create, source string, meta map[string]string) error {
	var createType pb.VariableType
	if create != "" {
		t, err := parseType(create)
		if err != nil {
			return usagef("--create: %v", err)
		}
		createType = t
	}
	c, err := e.dial(cf)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := c.call()
	list, err := c.ListVariables(ctx, &pb.ListVariablesRequest{SessionId: session})
	cancel()
	if err != nil {
		return c.err(err)
	}
	types := map[string]pb.VariableType{}
	for _, v := range list.GetVariables() {
		types[v.GetName()], types[v.GetId()] = v.GetType(), v.GetType()
	}

	w, err := c.Writer(c.ctx, session, vwclient.WriterOptions{})
	if err != nil {
		return c.err(err)
	}
	type line struct {
		n    int
		name string
		p    *vwclient.Pending
	}
	var lines []line // written, not yet settled
	failed, written, last := 0, 0, int64(0)
	report := func(l line, err error) {
		failed++
		shown := err.Error()
		if s, ok := status.FromError(err); ok {
			shown = grpcapi.CodeName(s.Code()) + ": " + s.Message() // printed, never compared
		}
		fmt.Fprintf(e.stderr, "varwatch: line %d (%s): %s\n", l.n, l.name, shown)
	}
	settle := func(l line) {
		r, err := l.p.Wait(c.ctx)
		if err != nil {
			report(l, err)
			return
		}
		written++
		last = r.Revision
	}
	in := e.stdin
	if in == nil {
		in = stdin
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // a line may hold a large tensor
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, val, _ := strings.Cut(text, " ")
		val = strings.TrimSpace(val)
		typ, known := types[name]
		req := &pb.SetVariableRequest{VariableIdentifier: name, Source: source, Metadata: meta}
		if !known {
			if createType == pb.VariableType_VARIABLE_TYPE_UNSPECIFIED {
				report(line{n, name, nil}, fmt.Errorf("no variable %q in session %q (--create TYPE creates it)", name, session))
				continue
			}
			typ, req.CreateType = createType, createType
			types[name] = typ // later lines of it parse as the type it gets
		}
		v, err := parseValue(typ, val)
		if err != nil {
			report(line{n, name, nil}, err)
			continue
		}
		req.Value = v
		lines = append(lines, line{n, name, w.Write(req)})
		// Answered lines are settled as they come, so memory stays
		// bounded by the window, not by the input.
		for len(lines) > 0 && answered(lines[0].p) {
			settle(lines[0])
			lines = lines[1:]
		}
	}
	if err := sc.Err(); err != nil {
		_ = w.Close()
		return fmt.Errorf("reading stdin: %w", err)
	}
	closeErr := w.Close()
	for _, l := range lines {
		settle(l)
	}
	if closeErr != nil {
		return c.err(closeErr)
	}
	fmt.Fprintf(e.stdout, "%d written, revision %d\n", written, last)
	if failed > 0 {
		return fmt.Errorf("%d lines failed", failed)
	}
	return nil
}

func answered(p *vwclient.Pending) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}
