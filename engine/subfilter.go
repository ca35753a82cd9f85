package engine

// subFilter picks a subscription's events out of its session's feed,
// exactly as the loop routes them (fanout.go): a change or deletion of a
// watched variable; a registration matching the pattern, which watches
// the new variable from then on; the session's end.
//
// # Notes
//
// Owned by whoever reads the feed for the subscription: its consumer in
// Drain, or the loop in spill (Subscription.draining keeps them apart).
type subFilter struct {
	// all: the pattern matches every name, so every event is taken and
	// ids is not kept (a lookup per event was most of a fan-out's drain).
	all  bool
	ids  map[string]struct{} // the variables watched, by id
	glob *Glob               // nil: no pattern
	n    int                 // how many variables are watched
}

func newSubFilter(slots []*varSlot, glob *Glob) subFilter {
	if glob != nil && glob.pattern == "*" {
		return subFilter{all: true, glob: glob, n: len(slots)}
	}
	f := subFilter{ids: make(map[string]struct{}, len(slots)), glob: glob, n: len(slots)}
	for _, slot := range slots {
		f.ids[slot.cur.ID] = struct{}{}
	}
	return f
}

// take reports whether ev is the subscription's, and follows what it
// changes in the watched set.
func (f *subFilter) take(ev *Event) bool {
	if f.all {
		switch ev.Type {
		case EventVariableRegistered:
			f.n++
		case EventVariableDeleted:
			f.n--
		}
		return true
	}
	switch ev.Type {
	case EventSessionClosed:
		return true
	case EventVariableRegistered:
		if f.glob == nil || !f.glob.Match(ev.Variable.Name) {
			return false
		}
		f.ids[ev.Variable.ID] = struct{}{}
		f.n++
		return true
	case EventVariableDeleted:
		_, ok := f.ids[ev.Variable.ID]
		if ok {
			delete(f.ids, ev.Variable.ID) // ids are never reused
			f.n--
		}
		return ok
	default:
		_, ok := f.ids[ev.Variable.ID]
		return ok
	}
}

// watched is how many variables the filter takes changes of. With mu held
// and no Drain reading (Subscription.draining false).
func (f *subFilter) watched() int { return f.n }
