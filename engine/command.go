package engine

import "time"

// command is a typed request to the loop. apply runs on the loop goroutine
// and records the result; finish wakes the caller, after the events of the
// loop cycle have been published (so an acknowledged write is already
// visible to every watcher).
type command interface {
	apply(st *state)
	finish()
}

// reply carries a command's result back to its caller.
type reply[R any] struct {
	res  R
	err  error
	done chan struct{}
}

func (r *reply[R]) set(res R, err error) { r.res, r.err = res, err }
func (r *reply[R]) fail(err error)       { r.err = err }
func (r *reply[R]) finish()              { close(r.done) }

// failable is implemented by every command, through reply: the loop fails
// commands it will never apply (on Close).
type failable interface{ fail(error) }

type createSessionResult struct {
	info    SessionInfo
	created bool
}

type createSessionCmd struct {
	reply[createSessionResult]
	req CreateSessionRequest
	now time.Time
}

func (c *createSessionCmd) apply(st *state) {
	info, created, err := st.createSession(c.req, c.now)
	c.set(createSessionResult{info, created}, err)
}

type getSessionCmd struct {
	reply[SessionInfo]
	id  string
	now time.Time
}

func (c *getSessionCmd) apply(st *state) {
	s, err := st.session(c.id, c.now)
	if err != nil {
		c.fail(err)
		return
	}
	c.set(s.info(), nil)
}

type listSessionsCmd struct {
	reply[[]SessionInfo]
	now time.Time
}

func (c *listSessionsCmd) apply(st *state) { c.set(st.listSessions(c.now), nil) }

type closeSessionCmd struct {
	reply[int]
	id  string
	now time.Time
}

func (c *closeSessionCmd) apply(st *state) {
	s, err := st.session(c.id, c.now)
	if err != nil {
		c.fail(err)
		return
	}
	n := len(s.vars)
	st.removeSession(s, c.now)
	c.set(n, nil)
}

type registerCmd struct {
	reply[SetResult]
	req    RegisterRequest
	pre    registered
	routes map[*Subscription]bool // pattern watches it was matched to off the loop
	now    time.Time
	// route, set by apply, are the pattern watches to match it to before
	// sending it again (names.go).
	route []*Subscription
}

func (c *registerCmd) apply(st *state) {
	res, route, err := st.register(c.req, c.pre, c.routes, c.now)
	c.set(res, err)
	c.route = route
}

type getCmd struct {
	reply[GetManyResult]
	session string
	idents  []string
	now     time.Time
}

func (c *getCmd) apply(st *state) { c.set(st.getMany(c.session, c.idents, c.now)) }

type setManyCmd struct {
	reply[SetManyResult]
	req   SetManyRequest
	pre   prechecks // made off the loop (offloop.go)
	now   time.Time
	needs []needCheck // set by apply: check these, then send again
}

func (c *setManyCmd) apply(st *state) {
	res, needs, err := st.setMany(c.req, c.pre, c.now)
	c.set(res, err)
	c.needs = needs
}

type listCmd struct {
	reply[ListResult]
	session string
	globErr error // the pattern did not compile
	now     time.Time
}

func (c *listCmd) apply(st *state) { c.set(st.list(c.session, c.globErr, c.now)) }

type deleteCmd struct {
	reply[int64]
	session, ident string
	now            time.Time
}

func (c *deleteCmd) apply(st *state) { c.set(st.delete(c.session, c.ident, c.now)) }

type watchCmd struct {
	reply[*Subscription]
	req    WatchRequest
	pre    *globMatches // its pattern matched off the loop (names.go)
	now    time.Time
	engine *Engine
}

func (c *watchCmd) apply(st *state) { c.set(st.watch(c.engine, c.req, c.pre, c.now)) }

type unsubscribeCmd struct {
	reply[struct{}]
	sub *Subscription
	now time.Time
}

func (c *unsubscribeCmd) apply(st *state) { st.unregister(c.sub, c.now) }
