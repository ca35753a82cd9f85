package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/grpcapi/client"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// upsert: creating fresh variables with their first value over loopback,
// three ways in one run: RegisterVariable then SetVariable (two calls
// each, the only way before upserts), SetVariable with create_type (one
// call each), and upserts on the write stream (client.Writer, pipelined).
// Each row then checks that the session holds every variable with its
// value, at the version its way gives (2 after register-then-set, 1
// after an upsert).
func (h *harness) upsert(ctx context.Context) {
	n := 10000
	if h.o.Size == "tiny" {
		n = 300
	}
	variant := fmt.Sprintf("%d fresh variables", n)
	var base float64
	for _, way := range []string{"RegisterVariable then SetVariable", "SetVariable create_type", "WriteVariables create_type"} {
		r := Row{Scenario: "upsert", Variant: variant, API: way, System: "varwatch", Unit: "variables/s", higherBetter: true}
		sys, err := newVarwatch(h.o.Server, vwMode{}, nil, 1)
		if err != nil {
			h.add(failRow(r, err))
			continue
		}
		r = h.upsertRow(ctx, r, sys, n, way)
		sys.close()
		if r.Status == "" && base == 0 {
			base = r.Value
		} else if r.Status == "" && base > 0 {
			r.Note = fmt.Sprintf("%.2fx register-then-set", r.Value/base)
		}
		h.add(r)
	}
}

func (h *harness) upsertRow(ctx context.Context, r Row, sys *vwSystem, n int, way string) Row {
	if err := sys.prepare(ctx, 0); err != nil {
		return failRow(r, err)
	}
	c := sys.client
	name := func(i int) string { return fmt.Sprintf("fresh%d", i) }
	val := func(i int) *pb.Value { return &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: float64(i)}} }
	m := startMeter()
	start := time.Now()
	switch way {
	case "RegisterVariable then SetVariable":
		for i := range n {
			if _, err := c.RegisterVariable(ctx, &pb.RegisterVariableRequest{SessionId: sys.session, Name: name(i),
				Type: pb.VariableType_VARIABLE_TYPE_FLOAT, InitialValue: val(-1)}); err != nil {
				return failRow(r, err)
			}
			if _, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: sys.session, VariableIdentifier: name(i), Value: val(i)}); err != nil {
				return failRow(r, err)
			}
		}
	case "SetVariable create_type":
		for i := range n {
			if _, err := c.SetVariable(ctx, &pb.SetVariableRequest{SessionId: sys.session, VariableIdentifier: name(i), Value: val(i),
				CreateType: pb.VariableType_VARIABLE_TYPE_FLOAT}); err != nil {
				return failRow(r, err)
			}
		}
	default:
		cl, err := client.New(sys.addr)
		if err != nil {
			return failRow(r, err)
		}
		defer cl.Close()
		w, err := cl.Writer(ctx, sys.session, client.WriterOptions{Upsert: true})
		if err != nil {
			return failRow(r, err)
		}
		var last *client.Pending
		for i := range n {
			last = w.Set(name(i), val(i))
		}
		if err := w.Flush(ctx); err != nil {
			return failRow(r, err)
		}
		if _, err := last.Wait(ctx); err != nil {
			return failRow(r, err)
		}
		if err := w.Close(); err != nil {
			return failRow(r, err)
		}
	}
	elapsed := time.Since(start)
	m.stop(&r, int64(n))
	r.Value = float64(n) / elapsed.Seconds()
	wantVersion := int64(1)
	if way == "RegisterVariable then SetVariable" {
		wantVersion = 2
	}
	list, err := c.ListVariables(ctx, &pb.ListVariablesRequest{SessionId: sys.session})
	if err != nil {
		return failRow(r, err)
	}
	if len(list.GetVariables()) != n {
		return failRow(r, fmt.Errorf("%d variables, want %d", len(list.GetVariables()), n))
	}
	for _, v := range list.GetVariables() {
		var i int
		if _, err := fmt.Sscanf(v.GetName(), "fresh%d", &i); err != nil || v.GetValue().GetFloatValue() != float64(i) || v.GetVersion() != wantVersion {
			return failRow(r, fmt.Errorf("variable %s = %v at version %d", v.GetName(), v.GetValue(), v.GetVersion()))
		}
	}
	return r
}

// enginePipelinedRow is the engine row of one writer with SetBatches:
// batches of one set, 1000 per call, to one variable; verified as the
// blocking rows are.
func (h *harness) enginePipelinedRow(ctx context.Context, r Row) Row {
	e := engine.New(engine.Config{})
	defer e.Close()
	if _, _, err := e.CreateSession(ctx, engine.CreateSessionRequest{ID: "e"}); err != nil {
		return failRow(r, err)
	}
	reg, err := e.Register(ctx, engine.RegisterRequest{Session: "e", Name: "v0", Type: engine.TypeInteger, Value: engine.Integer(0)})
	if err != nil {
		return failRow(r, err)
	}
	batch := []engine.SetManyRequest{{Session: "e", Sets: make([]engine.SetRequest, 1000)}}
	m := startMeter()
	deadline := time.Now().Add(h.sz.duration)
	n, lastRev := int64(0), reg.Revision
	for time.Now().Before(deadline) {
		for i := range batch[0].Sets {
			n++
			batch[0].Sets[i] = engine.SetRequest{Variable: "v0", Value: engine.Integer(n)}
		}
		res := e.SetBatches(ctx, batch)[0]
		if res.Err != nil {
			return failRow(r, res.Err)
		}
		for _, it := range res.Items {
			if it.Err != nil {
				return failRow(r, it.Err)
			}
			if it.Revision != lastRev+1 {
				return failRow(r, fmt.Errorf("revision %d after %d", it.Revision, lastRev))
			}
			lastRev = it.Revision
		}
	}
	elapsed := time.Since(m.start)
	m.stop(&r, n)
	v, err := e.Get(ctx, "e", "v0")
	if err != nil {
		return failRow(r, err)
	}
	if v.Value.Integer() != n || v.Version != n+1 {
		return failRow(r, fmt.Errorf("v0 holds %d at version %d, want %d at version %d", v.Value.Integer(), v.Version, n, n+1))
	}
	r.Value, r.Delivered = float64(n)/elapsed.Seconds(), n
	return r
}
