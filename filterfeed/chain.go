package filterfeed

import (
	"context"
	"maps"
	"slices"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/plugins"
)

// kindOf maps the event types a filter sees; others pass it by.
var kindOf = map[engine.EventType]plugins.Kind{
	engine.EventInitialValue:       plugins.KindInitialValue,
	engine.EventValueChange:        plugins.KindValueChange,
	engine.EventVariableRegistered: plugins.KindRegistered,
	engine.EventVariableDeleted:    plugins.KindDeleted,
}

// eventToUpdate converts ev for the filters; false for events that are
// not about a variable's value.
func eventToUpdate(ev *engine.Event) (plugins.Update, bool) {
	kind, ok := kindOf[ev.Type]
	if !ok || ev.Variable == nil {
		return plugins.Update{}, false
	}
	v := ev.Variable
	u := plugins.Update{
		Kind:     kind,
		Revision: ev.Revision,
		Time:     ev.Time.UnixNano(),
		ID:       v.ID,
		Name:     v.Name,
		Type:     valueToPlugin(v.Value).Type,
		New:      valueToPlugin(v.Value),
		Source:   ev.Source,
	}
	if ev.Type == engine.EventValueChange {
		u.Old = valueToPlugin(ev.OldValue)
	}
	if len(ev.Metadata) > 0 {
		u.Metadata = make(plugins.Metadata, 0, len(ev.Metadata))
		for _, k := range slices.Sorted(maps.Keys(ev.Metadata)) {
			u.Metadata = append(u.Metadata, plugins.KV{Key: k, Value: ev.Metadata[k]})
		}
	}
	return u, true
}

// applyVerdict returns ev with a Replace verdict's parts applied; the
// variable is copied (published variables are immutable).
func applyVerdict(ev engine.Event, v plugins.Verdict) engine.Event {
	ev.Memo = nil // the unfiltered encoding no longer fits
	if v.New != nil {
		nv := *ev.Variable
		nv.Value = valueFromPlugin(*v.New)
		ev.Variable = &nv
	}
	if v.Old != nil {
		ev.OldValue = valueFromPlugin(*v.Old)
	}
	if v.Metadata != nil {
		md := make(map[string]string, len(v.Metadata))
		for _, kv := range v.Metadata {
			md[kv.Key] = kv.Value
		}
		ev.Metadata = md
	}
	return ev
}

func valueToPlugin(v engine.Value) plugins.Value {
	switch v.Type() {
	case engine.TypeFloat:
		return plugins.Float(v.Float())
	case engine.TypeInteger:
		return plugins.Integer(v.Integer())
	case engine.TypeString:
		return plugins.String(v.Str())
	case engine.TypeBoolean:
		return plugins.Boolean(v.Boolean())
	case engine.TypeChoice:
		return plugins.Choice(v.Str())
	case engine.TypeModule:
		return plugins.Module(v.Str())
	case engine.TypeEmbedding:
		return plugins.Embedding(v.Embedding())
	case engine.TypeTensor:
		t := v.Tensor()
		return plugins.TensorValue(plugins.Tensor{Shape: t.Shape, DType: t.DType, Data: t.Data})
	}
	return plugins.Value{}
}

func valueFromPlugin(v plugins.Value) engine.Value {
	switch v.Type {
	case plugins.TypeFloat:
		return engine.Float(v.Float)
	case plugins.TypeInteger:
		return engine.Integer(v.Int)
	case plugins.TypeString:
		return engine.String(v.Str)
	case plugins.TypeBoolean:
		return engine.Boolean(v.Bool)
	case plugins.TypeChoice:
		return engine.Choice(v.Str)
	case plugins.TypeModule:
		return engine.Module(v.Str)
	case plugins.TypeEmbedding:
		return engine.Embedding(v.Embedding)
	case plugins.TypeTensor:
		if v.Tensor != nil {
			return engine.TensorOf(engine.Tensor{Shape: v.Tensor.Shape, DType: v.Tensor.DType, Data: v.Tensor.Data})
		}
	}
	return engine.Value{}
}

// runChain filters evs through chain and returns the survivors, replaced
// where a filter said so. Events that are not about a variable (session
// closed, initial_values_complete) pass untouched. On a *FaultError
// (on_error=close) or ErrClosed it returns nothing but the error.
func runChain(ctx context.Context, chain *plugins.Chain, evs []engine.Event) ([]engine.Event, error) {
	ups := make([]plugins.Update, 0, len(evs))
	idx := make([]int, 0, len(evs))
	for i := range evs {
		if u, ok := eventToUpdate(&evs[i]); ok {
			ups = append(ups, u)
			idx = append(idx, i)
		}
	}
	vs, err := chain.Run(ctx, ups, nil)
	if err != nil {
		return nil, err
	}
	out := make([]engine.Event, 0, len(evs))
	j := 0
	for i := range evs {
		if j < len(idx) && idx[j] == i {
			v := vs[j]
			j++
			switch v.Action {
			case plugins.Drop:
				continue
			case plugins.Replace:
				out = append(out, applyVerdict(evs[i], v))
				continue
			}
		}
		out = append(out, evs[i])
	}
	return out, nil
}
