package engine

// feed is a session's published events, stored once and read by every
// subscription of the session through a cursor of its own, the way etcd's
// watchable store and Consul's event buffer serve their watchers: a change
// costs the loop one append plus a count per subscription it concerns,
// never a copy of the event per subscription.
//
// Positions number the events appended since the session was created.
// Events live in chunks of fixed length that never move or change once
// written. Readers get a feedView, the chunks and the position up to which
// they were published, and read it without a lock: the loop writes only
// past every view it handed out. Chunks no subscription needs any more
// leave the feed; a reader still holding a view keeps its chunks alive
// until it lets go (see Subscription.view).
//
// What a subscription has not drained pins the feed from its cursor. A
// consumer too slow for that (feedSpill events behind) has its events
// copied into its own queue instead (spill), as every event was before
// the feed, so one stalled reader of a few variables never makes the feed
// hold a busy session's every event, and still gets exactly its bounds
// (SubscriptionBuffer, -Bytes). A reader owed nearly every event it pins
// is not copied: its queue would hold as much, and its bounds count what
// it pins all the same.
//
// # Notes
//
// Owned by the loop goroutine, like its session; views are immutable.
type feed struct {
	chunks []*feedChunk // chunks[0] holds the oldest position kept
	end    int64        // the position of the next event
}

// feedChunk holds events from position start on; a chunk of a published
// view is written only past the view's end.
type feedChunk struct {
	start  int64
	events []Event // fixed length
}

// feedView is what a subscription may read: positions before end.
type feedView struct {
	chunks []*feedChunk
	end    int64
}

// Variables, not constants, so tests can make chunks tiny and spill
// often; set before an engine starts.
var (
	// Chunks grow from minChunk to maxChunk events, so a quiet session's
	// feed stays small and a busy one allocates rarely.
	minChunk = 8
	maxChunk = 256
	// feedSpill is how far behind the end of the feed a subscription may
	// stay before its waiting events are spilled into its own queue.
	feedSpill int64 = 16 * 256
)

// full reports whether the next append starts a new chunk.
func (f *feed) full() bool {
	if len(f.chunks) == 0 {
		return true
	}
	last := f.chunks[len(f.chunks)-1]
	return f.end-last.start == int64(len(last.events))
}

// append adds a copy of ev and returns its position. ev.bytes must be
// set.
func (f *feed) append(ev *Event) int64 {
	if f.full() {
		n := minChunk
		if k := len(f.chunks); k > 0 {
			n = min(2*len(f.chunks[k-1].events), maxChunk)
		}
		f.chunks = append(f.chunks, &feedChunk{start: f.end, events: make([]Event, n)})
	}
	last := f.chunks[len(f.chunks)-1]
	last.events[f.end-last.start] = *ev
	pos := f.end
	f.end++
	return pos
}

// view returns a view of everything appended so far.
func (f *feed) view() *feedView {
	return &feedView{chunks: f.chunks[:len(f.chunks):len(f.chunks)], end: f.end}
}

// trim drops the chunks wholly before position keep; the last chunk
// stays, to be appended to.
func (f *feed) trim(keep int64) {
	k := 0
	for k < len(f.chunks)-1 && f.chunks[k+1].start <= keep {
		k++
	}
	if k > 0 {
		// A new list, not a reslice: the old one's prefix would keep the
		// dropped chunks alive, and clearing it would write to what views
		// handed out may be reading.
		f.chunks = append(make([]*feedChunk, 0, len(f.chunks)-k+4), f.chunks[k:]...)
	}
}

// start is the oldest position the feed still holds.
func (f *feed) start() int64 {
	if len(f.chunks) == 0 {
		return f.end
	}
	return f.chunks[0].start
}

// each calls fn with the events of v from position from on, in order,
// until fn returns false; it returns the position after the last event fn
// was called with (from, if none).
func (v *feedView) each(from int64, fn func(*Event) bool) int64 {
	i := len(v.chunks) - 1
	for i > 0 && v.chunks[i].start > from {
		i--
	}
	for ; i < len(v.chunks) && from < v.end; i++ {
		c := v.chunks[i]
		for j := from - c.start; j < int64(len(c.events)) && from < v.end; j++ {
			from++
			if !fn(&c.events[j]) {
				return from
			}
		}
	}
	return from
}
