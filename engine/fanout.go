package engine

import (
	"iter"
	"slices"
	"time"
)

// watch registers a subscription and snapshots its initial values in the
// same loop step: nothing can happen between the two. pre is what the
// caller matched off the loop (names.go); it is set whenever the request
// has a valid pattern.
func (st *state) watch(e *Engine, req WatchRequest, pre *globMatches, now time.Time) (*Subscription, error) {
	s, err := st.session(req.Session, now)
	if err != nil {
		return nil, err
	}
	pattern := watchPattern(req)
	var glob *Glob
	if pattern != "" {
		g, err := CompileGlob(pattern)
		if err != nil {
			return nil, err
		}
		glob = &g
	}
	if req.Incarnation != "" && req.Incarnation != s.incarnation {
		// Checked before the start revision: against another history a
		// revision is meaningless, whether it looks ahead or behind.
		return nil, &IncarnationError{Session: s.id, Requested: req.Incarnation, Current: s.incarnation}
	}
	if req.Buffer < 0 {
		return nil, errorf(ErrInvalidArgument, "subscription buffer %d is negative", req.Buffer)
	}
	var replay iter.Seq[*histEntry]
	if req.Resume {
		switch {
		case req.IncludeInitialValues:
			return nil, errorf(ErrInvalidArgument, "include_initial_values and start_revision are exclusive: a resumed watch replays changes instead")
		case req.StartRevision < 0:
			return nil, errorf(ErrInvalidArgument, "start revision %d is negative", req.StartRevision)
		case req.StartRevision > s.rev:
			return nil, errorf(ErrInvalidArgument, "start revision %d is ahead of session %q, which is at revision %d", req.StartRevision, s.id, s.rev)
		}
		if replay, err = s.hist.since(req.StartRevision); err != nil {
			return nil, err
		}
	}

	// Watched variables: the named ones in request order, then the
	// pattern's matches by name, each once.
	// A set, not a search of slots: a request may name 10,000.
	var slots []*varSlot
	seen := make(map[*varSlot]struct{}, len(req.Variables))
	for _, ident := range req.Variables {
		if err := checkIdent(ident); err != nil {
			return nil, err
		}
		slot := s.lookup(ident)
		if slot == nil {
			return nil, errorf(ErrVariableNotFound, "no variable %q in session %q", ident, s.id)
		}
		if _, dup := seen[slot]; !dup {
			seen[slot] = struct{}{}
			slots = append(slots, slot)
		}
	}
	if glob != nil {
		for _, slot := range s.matchingSlots(glob, pre) {
			if _, dup := seen[slot]; !dup {
				slots = append(slots, slot)
			}
		}
	}

	limit := req.Buffer
	if limit == 0 {
		limit = st.cfg.SubscriptionBuffer
	}
	sub := &Subscription{
		engine:      e,
		snapshotRev: s.rev,
		incarnation: s.incarnation,
		published:   &s.published,
		sess:        s,
		glob:        glob,
		ready:       make(chan struct{}, 1),
		onReady:     req.OnReady,
		done:        make(chan struct{}),
		limit:       limit,
		limitBytes:  st.cfg.SubscriptionBytes,
		lastRev:     s.rev,
		coalesce:    req.Coalesce,
		cursor:      s.feed.end, // what the feed holds is in the snapshot
	}
	if sub.coalesce {
		sub.latest = make(map[string]int)
	}
	for _, slot := range slots {
		slot.watchers.add(sub)
	}
	sub.slots = slots
	if glob != nil {
		s.patternSubs.add(sub)
	}
	s.subs[sub] = struct{}{}
	sub.filter = newSubFilter(slots, glob)

	if req.IncludeInitialValues {
		// Nobody else can see sub yet, so the snapshot goes straight to
		// pending, ahead of anything this cycle stages later. The buffer
		// grows by the snapshot so a large snapshot alone never overflows.
		sub.pending = make([]Event, 0, len(slots)+1)
		for _, slot := range slots {
			sub.pending = append(sub.pending, Event{Type: EventInitialValue, Revision: s.rev,
				Variable: slot.cur, Source: slot.cur.Source, Time: now})
		}
		sub.pending = append(sub.pending, Event{Type: EventInitialValuesComplete, Revision: s.rev, Time: now, Incarnation: s.incarnation})
		sub.grow()
		sub.lastRev = 0
		sub.signal()
	}
	if req.Resume {
		// Replay (StartRevision, s.rev] from history; later changes are
		// staged live, so the seam has no gap and no overlap.
		sub.lastRev = req.StartRevision
		for entry := range replay {
			entry.events(func(h *histEvent) {
				if ev := h.event(entry.rev); sub.wants(ev, pre) {
					sub.add(ev)
				}
			})
			if sub.coalesce && entry.rev == req.StartRevision+1 {
				// The changes of the first revision replayed stand alone:
				// a client resumes from just before a revision it received
				// in part (an atomic set cut by a disconnect) and skips the
				// changes of it it already has, which it can only do if
				// none was merged into a later change (the merged count
				// would count it twice).
				clear(sub.latest)
			}
		}
		sub.grow()
		sub.signal()
	}
	return sub, nil
}

// grow makes room for what a new subscription starts with (a snapshot, a
// replay): its bounds are for what comes after, so a large snapshot alone
// never overflows. Before anyone else can see sub.
func (sub *Subscription) grow() {
	sub.limit += len(sub.pending)
	if sub.coalesce {
		return
	}
	n := eventsSize(sub.pending)
	sub.bytes += n
	if sub.limitBytes >= 0 {
		sub.limitBytes += n
	}
}

// wants reports whether a past event concerns sub, exactly as the live
// indexes would have routed it: registrations go to pattern watches only.
// pre holds the pattern's matches made off the loop.
func (sub *Subscription) wants(ev Event, pre *globMatches) bool {
	matches := sub.glob != nil && pre.matches(sub.glob, ev.Variable)
	if ev.Type == EventVariableRegistered {
		return matches
	}
	return matches || slices.ContainsFunc(sub.slots, func(slot *varSlot) bool { return slot.cur.ID == ev.Variable.ID })
}

// emit appends ev to s's feed for its subscriptions, which stage routes
// it to; it returns ev's position. ev.bytes must be set.
func (st *state) emit(s *session, ev *Event) int64 {
	if s.feed.full() {
		st.sweep(s)
	}
	return s.feed.append(ev)
}

// sweep lets go of the feed's chunks that no subscription of s needs any
// more; a subscription lagging more than feedSpill behind gets its events
// spilled into its own queue first, unless it is owed nearly all of them
// (Subscription.spill). It runs when a chunk is full, so its
// O(subscriptions) cost spreads over at least minChunk events.
func (st *state) sweep(s *session) {
	// What is not published yet is kept whoever it is for. Loaded before
	// the subscriptions, so everything before it counts in their holds.
	keep := s.feedPublished.Load()
	for sub := range s.subs {
		pos, ok := sub.holds()
		if ok && s.feed.end-pos > feedSpill && sub.spill(s.feed.end-pos, sub.staged.n) {
			continue
		}
		if ok {
			keep = min(keep, pos)
		}
	}
	s.feed.trim(keep)
}

// stage routes the event at feed position pos, of size bytes, to sub,
// which sees it at the end of the loop cycle.
func (st *state) stage(sub *Subscription, pos int64, bytes int) {
	if sub.ended.Load() {
		return
	}
	if sub.staged.n == 0 {
		st.touched = append(st.touched, sub)
		sub.staged.first = pos
	}
	sub.staged.n++
	sub.staged.bytes += bytes
}

// takeDelivery returns what the cycle routed to sub and resets it.
func (sub *Subscription) takeDelivery() delivery {
	d := sub.staged
	if d.n > 0 {
		d.view = sub.sess.publishedView()
	}
	sub.staged = delivery{}
	return d
}

// publishedView returns a view of s's feed as it is, made once per cycle
// for all its subscriptions.
func (s *session) publishedView() *feedView {
	if s.lastView == nil || s.lastView.end != s.feed.end {
		s.lastView = s.feed.view()
	}
	return s.lastView
}

// publish hands the cycle's staged events to their subscriptions, then
// advances each changed session's published revision. That order is what
// makes Subscription.HeartbeatRevision sound.
func (st *state) publish() {
	for i, sub := range st.touched {
		st.deliver(sub, sub.takeDelivery())
		st.touched[i] = nil
	}
	st.touched = st.touched[:0]
	for i, s := range st.dirty {
		s.published.Store(s.rev)
		s.feedPublished.Store(s.feed.end)
		s.dirty = false
		st.dirty[i] = nil
	}
	st.dirty = st.dirty[:0]
}

// deliver hands sub its delivery of a cycle.
func (st *state) deliver(sub *Subscription, d delivery) {
	if !sub.publish(d) {
		st.dropEnded(sub)
	}
}

// dropEnded unregisters sub, which its delivery ended. A reader cut off
// while it pinned the feed lets it go now, not when the next chunk fills:
// its session may be idle from now on.
func (st *state) dropEnded(sub *Subscription) {
	st.unregister(sub, st.cfg.Now())
	if f := &sub.sess.feed; f.end-f.start() > feedSpill {
		st.sweep(sub.sess)
	}
}

// unregister removes sub from its session's indexes, at now. Idempotent.
func (st *state) unregister(sub *Subscription, now time.Time) {
	if sub.removed {
		return
	}
	sub.removed = true
	s := sub.sess
	delete(s.subs, sub)
	if len(s.subs) == 0 {
		st.lastWatchEnded(s, now)
	}
	for _, slot := range sub.slots {
		if s.vars[slot.cur.ID] == slot { // not deleted since
			slot.watchers.died()
		}
	}
	if sub.glob != nil {
		s.patternSubs.died()
	}
	sub.slots = nil
}

// endAll ends every subscription with reason (the engine is closing).
func (st *state) endAll(reason error) {
	for _, s := range st.sessions {
		for sub := range s.subs {
			sub.end(reason)
			st.unregister(sub, st.cfg.Now())
		}
	}
}
