package engine

// What the engine's byte bounds count. Two estimates, both meant as upper
// bounds, both O(1) on the loop from what is cached (a variable's
// metadata stats, its constraints' size), so that counting never walks a
// map the client filled:
//
//   - memory: what an event keeps alive on the heap, for the history
//     bounds and the subscription byte bound. A metadata entry costs its
//     key and value plus 64 (two string headers and the map's share).
//   - wire: what an update or a variable takes encoded as protobuf, for
//     MaxSendMessageBytes. A string or bytes field costs its bytes plus 8
//     (tag and length), a map entry its key and value plus 20 (entry tag
//     and length, two fields), a number 11.

// DefaultSubscriptionBytes is what a zero Config.SubscriptionBytes means.
const DefaultSubscriptionBytes = 64 << 20

// messageFraming is what the transport adds around one update or answer
// (the response message, a batch): MaxSendMessageBytes less it is what an
// update may take.
const messageFraming = 1 << 10

// metaStats are a metadata map's entries and key and value bytes.
type metaStats struct{ entries, bytes int }

func statsOf(m map[string]string) metaStats {
	st := metaStats{entries: len(m)}
	for k, v := range m {
		st.bytes += len(k) + len(v)
	}
	return st
}

func (m metaStats) wire() int { return m.bytes + 20*m.entries }
func (m metaStats) mem() int  { return m.bytes + 64*m.entries }

// merged returns the stats of cur (whose stats are m) after add is
// merged into it. O(len(add)).
func (m metaStats) merged(cur, add map[string]string) metaStats {
	for k, v := range add {
		if old, ok := cur[k]; ok {
			m.bytes += len(v) - len(old)
		} else {
			m.entries++
			m.bytes += len(k) + len(v)
		}
	}
	return m
}

// valueWire is v encoded as a Value message, framing included.
func valueWire(v Value) int {
	n := ValueBytes(v) + 40
	if v.ten != nil {
		n += 3*len(v.ten.Shape) + len(v.ten.DType)
	}
	return n
}

// constraintsWire is c encoded as a Constraints message.
func constraintsWire(c *Constraints) int {
	n := 128 + len(c.Pattern) + 11*len(c.Shape)
	for _, s := range c.Choices {
		n += len(s) + 8
	}
	for _, s := range c.AllowedModules {
		n += len(s) + 8
	}
	return n
}

// variableWire is v encoded as a Variable message, framing included;
// ccWire is its constraints' constraintsWire.
func variableWire(v *Variable, ccWire int) int {
	return fixedWire(v.ID, v.Name, ccWire) + len(v.Source) + valueWire(v.Value) + v.meta.wire()
}

// fixedWire is the part of variableWire that no write changes: the
// fixed fields, the id, the name and the constraints.
func fixedWire(id, name string, ccWire int) int { return 192 + len(id) + len(name) + ccWire }

// fixedMem is the part of a variable's memory, as eventSizeWith counts
// it, that no write changes.
func fixedMem(id, name string) int { return 200 + len(id) + len(name) }

// updateWire is a watch update of v encoded: the variable, the old value,
// the write's source and metadata, and the fixed fields.
func updateWire(v *Variable, ccWire int, old Value, source string, meta metaStats) int {
	return 128 + len(v.ID) + variableWire(v, ccWire) + valueWire(old) + len(source) + meta.wire()
}

// UpdateSizeBound is an upper bound of ev's size encoded as a watch update
// (a varwatch.v1.VariableUpdate), as the engine estimates it to keep every
// write within Config.MaxSendMessageBytes. It walks ev's maps, so it is
// for tests and tools: the loop uses the stats it keeps instead.
func UpdateSizeBound(ev Event) int {
	meta := statsOf(ev.Metadata)
	if ev.Variable == nil {
		return 128 + valueWire(ev.OldValue) + len(ev.Source) + meta.wire()
	}
	v := *ev.Variable
	v.meta = statsOf(v.Metadata)
	return updateWire(&v, constraintsWire(v.Constraints), ev.OldValue, ev.Source, meta)
}

// eventSize estimates an event's memory, for the history and
// subscription bounds: the variable it carries counts whole, metadata
// included, even when versions share a map (an over-count, never an
// under-count).
func eventSize(ev *Event) int {
	if ev.bytes > 0 {
		return ev.bytes
	}
	return eventSizeWith(*ev, statsOf(ev.Metadata))
}

// eventSizeWith is eventSize with meta, the stats of ev.Metadata.
func eventSizeWith(ev Event, meta metaStats) int {
	n := 160 + ev.OldValue.size() + len(ev.Source) + meta.mem()
	if v := ev.Variable; v != nil {
		n += fixedMem(v.ID, v.Name) + len(v.Source) + v.Value.size() + v.meta.mem()
	}
	return n
}
