package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memJournal is an in-memory Journal: records and one snapshot.
type memJournal struct {
	mu            sync.Mutex
	records       [][]byte // records[i] has index i+1
	snap          []byte
	snapThrough   int
	snapshotEvery int // records between snapshots; 0: never
	failAppend    error
	failEvery     int // fail every failEvery-th append; 0: never
	appends       int
	snaps         sync.WaitGroup
	// gate, when set, holds every Append until it receives; entered
	// hears of each Append as it starts.
	gate, entered chan struct{}
}

func (m *memJournal) Load(restore func(io.Reader) error, replay func([]byte) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.snap != nil {
		if err := restore(bytes.NewReader(m.snap)); err != nil {
			return err
		}
	}
	for i, r := range m.records[m.snapThrough:] {
		if err := replay(r); err != nil {
			return fmt.Errorf("record %d: %w", m.snapThrough+i+1, err)
		}
	}
	return nil
}

func (m *memJournal) Append(recs [][]byte) (bool, error) {
	if m.entered != nil {
		m.entered <- struct{}{}
	}
	if m.gate != nil {
		<-m.gate
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failAppend != nil {
		return false, m.failAppend
	}
	if m.appends++; m.failEvery > 0 && m.appends%m.failEvery == 0 {
		return false, errors.New("injected append failure")
	}
	for _, r := range recs {
		m.records = append(m.records, bytes.Clone(r))
	}
	return m.snapshotEvery > 0 && len(m.records)-m.snapThrough >= m.snapshotEvery, nil
}

func (m *memJournal) Snapshot(write func(io.Writer) error, wait bool) error {
	m.mu.Lock()
	through := len(m.records)
	m.mu.Unlock()
	do := func() {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			panic(err)
		}
		m.mu.Lock()
		if through >= m.snapThrough {
			m.snap, m.snapThrough = buf.Bytes(), through
		}
		m.mu.Unlock()
	}
	if wait {
		do()
		return nil
	}
	m.snaps.Add(1)
	go func() { defer m.snaps.Done(); do() }()
	return nil
}

func (m *memJournal) Reset() (bool, error) { return false, nil }

// replaysTo checks that mj's log alone, and its snapshot alone (the one
// Close took), each load into the state want.
func replaysTo(t *testing.T, mj *memJournal, clock *fakeClock, want stateDump) {
	t.Helper()
	for _, j := range []*memJournal{{records: mj.records}, {snap: mj.snap}} {
		again, err := Open(journalConfig(clock, j))
		if err != nil {
			t.Fatal(err)
		}
		var got stateDump
		inLoop(t, again, func(st *state) { got = dumpState(st) })
		again.Close()
		compareDumps(t, want, got, clock.now())
	}
}

// endsUnseen drains sub until it ends, which must be with ErrUnavailable
// and without a change: none was made durable.
func endsUnseen(t *testing.T, sub *Subscription) {
	t.Helper()
	for {
		ev, err := sub.Next(context.Background())
		if err != nil {
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("watch ended with %v, want ErrUnavailable", err)
			}
			return
		}
		if ev.Type == EventValueChange {
			t.Fatalf("the watcher saw a change that was not made durable: %+v", ev)
		}
	}
}

// clone copies what m holds, once its snapshots are written.
func (m *memJournal) clone() *memJournal {
	m.snaps.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	return &memJournal{records: append([][]byte(nil), m.records...), snap: m.snap, snapThrough: m.snapThrough}
}

// fakeClock is a shared clock that tests move by hand. Its times carry no
// monotonic reading, like the ones a replay decodes.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// sessionDump is every field of a session that a replay must reproduce.
type sessionDump struct {
	ID, Owner, Incarnation       string
	Metadata                     map[string]string
	CreatedAt, LastUsed, Expires int64
	TTL                          time.Duration
	Rev, Published, NextID       int64
	Vars                         map[string]*Variable
	Names                        []string
	HistCompacted                int64
	HistBytes                    int
	Hist                         []histEntry
	Constraints                  map[string]Constraints
	Gone                         bool
	// Counters derived from the above, which a restore must rebuild:
	// metadata bytes (the session limit), tenant bytes, and per variable
	// its tenant charge and registration sequence.
	MetaBytes, Bytes int
	SlotBytes        map[string]int
	Seqs             map[string]int64
	Usage            usage
}

type stateDump struct {
	Sessions  map[string]sessionDump
	HistBytes int
	Variables int64
}

func dumpState(st *state) stateDump {
	d := stateDump{Sessions: map[string]sessionDump{}, HistBytes: st.histBytes, Variables: st.counts.variables}
	for id, s := range st.sessions {
		sd := sessionDump{ID: s.id, Owner: s.owner, Incarnation: s.incarnation, Metadata: s.metadata,
			CreatedAt: s.createdAt.UnixNano(), LastUsed: s.lastUsed.UnixNano(), Expires: s.expiresAt.UnixNano(),
			TTL: s.ttl, Rev: s.rev, Published: s.published.Load(), NextID: s.nextID,
			Vars: map[string]*Variable{}, Constraints: map[string]Constraints{},
			HistCompacted: s.hist.compacted, HistBytes: s.hist.bytes, Hist: s.hist.live(), Gone: s.gone,
			MetaBytes: s.metaBytes, Bytes: s.bytes, SlotBytes: map[string]int{}, Seqs: map[string]int64{}}
		if s.usage != nil {
			sd.Usage = *s.usage
		}
		for vid, slot := range s.vars {
			sd.Vars[vid] = slot.cur
			sd.Constraints[vid] = slot.cc.Constraints
			sd.SlotBytes[vid], sd.Seqs[vid] = slot.bytes, slot.seq
		}
		for name, slot := range s.names {
			sd.Names = append(sd.Names, name+"="+slot.cur.ID)
		}
		sortStrings(sd.Names)
		d.Sessions[id] = sd
	}
	return d
}

func sortStrings(ss []string) {
	for i := 1; i < len(ss); i++ {
		for j := i; j > 0 && ss[j] < ss[j-1]; j-- {
			ss[j], ss[j-1] = ss[j-1], ss[j]
		}
	}
}

// compareDumps reports every difference, field by field. now is when the
// replayed engine started: a session whose live deadline was less than
// TTL/touchSlack ahead may have expired at that start (see touchSlack).
func compareDumps(t *testing.T, live, replayed stateDump, now time.Time) {
	t.Helper()
	for id, ls := range live.Sessions {
		if _, ok := replayed.Sessions[id]; !ok && ls.Expires-now.UnixNano() <= int64(ls.TTL/touchSlack) {
			delete(live.Sessions, id)
			live.Variables -= int64(len(ls.Vars))
			live.HistBytes -= ls.HistBytes
		}
	}
	if live.HistBytes != replayed.HistBytes || live.Variables != replayed.Variables {
		t.Errorf("totals: live histBytes %d variables %d, replayed %d %d", live.HistBytes, live.Variables, replayed.HistBytes, replayed.Variables)
	}
	if len(live.Sessions) != len(replayed.Sessions) {
		t.Errorf("live has %d sessions, replayed %d", len(live.Sessions), len(replayed.Sessions))
	}
	for id, ls := range live.Sessions {
		rs, ok := replayed.Sessions[id]
		if !ok {
			t.Errorf("session %s missing after replay", id)
			continue
		}
		// Reads refresh the TTL but are journaled only when they move it by
		// more than TTL/touchSlack: the replayed deadline may be earlier by
		// that much, never later.
		for _, f := range []struct {
			name       string
			live, repl int64
		}{{"LastUsed", ls.LastUsed, rs.LastUsed}, {"Expires", ls.Expires, rs.Expires}} {
			if lag := f.live - f.repl; lag < 0 || lag > int64(ls.TTL/touchSlack) {
				t.Errorf("session %s: replayed %s is %s behind the live one (allowed: 0..%s)", id, f.name, time.Duration(lag), ls.TTL/touchSlack)
			}
		}
		ls.LastUsed, ls.Expires = rs.LastUsed, rs.Expires
		lv, rv := reflect.ValueOf(ls), reflect.ValueOf(rs)
		for i := range lv.NumField() {
			if !reflect.DeepEqual(lv.Field(i).Interface(), rv.Field(i).Interface()) {
				t.Errorf("session %s field %s:\n live     %+v\n replayed %+v", id, lv.Type().Field(i).Name, lv.Field(i).Interface(), rv.Field(i).Interface())
			}
		}
	}
}

// randomHistory drives e with workers goroutines of random calls: every
// kind of mutation, from tenants and unscoped, with failures of every kind
// (limits, version conflicts, constraints, missing names) and expiries.
func randomHistory(t *testing.T, e *Engine, clock *fakeClock, seed uint64, workers, ops int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			ctx := context.Background()
			if w%2 == 1 {
				ctx = WithTenant(ctx, "tenant"+strconv.Itoa(w))
			}
			sid := func() string { return fmt.Sprintf("s%d-%d", w, r.IntN(4)) }
			name := func() string { return "v" + strconv.Itoa(r.IntN(8)) }
			val := func() Value {
				switch r.IntN(10) {
				case 0:
					return String(string(bytes.Repeat([]byte("x"), 100))) // over MaxValueBytes
				case 1:
					return String("ok") // fits a pattern constraint
				case 2:
					return String("zz") // fails it
				}
				return Integer(r.Int64N(20) - 5)
			}
			for range ops {
				switch r.IntN(14) {
				case 0:
					req := CreateSessionRequest{ID: sid(), Metadata: map[string]string{"w": strconv.Itoa(w)}}
					if r.IntN(2) == 0 {
						req.TTL = time.Duration(1+r.IntN(20)) * time.Second
					}
					_, _, _ = e.CreateSession(ctx, req)
				case 1, 2:
					req := RegisterRequest{Session: sid(), Name: name(), Type: TypeInteger, Value: Integer(r.Int64N(5)),
						Metadata: map[string]string{"k": "v"}}
					if r.IntN(3) == 0 {
						req.Constraints.MinInteger = ptr(int64(0))
					}
					if r.IntN(4) == 0 {
						req.Type, req.Value = TypeString, String("s")
						req.Constraints = Constraints{}
						if r.IntN(2) == 0 {
							// A costly constraint: sets to it are checked
							// off the loop, in two trips (offloop.go).
							req.Constraints.Pattern = "[a-s]*"
						}
					}
					_, _ = e.Register(ctx, req)
				case 3, 4, 5:
					req := SetRequest{Session: sid(), Variable: name(), Value: val(), Source: "w" + strconv.Itoa(w)}
					if r.IntN(3) == 0 {
						req.HasExpectedVersion, req.ExpectedVersion = true, int64(1+r.IntN(3))
					}
					if r.IntN(3) == 0 {
						req.Metadata = map[string]string{"m": strconv.Itoa(r.IntN(9))}
					}
					_, _ = e.Set(ctx, req)
				case 6, 7:
					req := SetManyRequest{Session: sid(), Atomic: r.IntN(2) == 0}
					for range 1 + r.IntN(4) {
						req.Sets = append(req.Sets, SetRequest{Variable: name(), Value: val()})
					}
					_, _ = e.SetMany(ctx, req)
				case 8:
					_, _ = e.Delete(ctx, sid(), name())
				case 9:
					_, _ = e.Get(ctx, sid(), name())
				case 10:
					_, _ = e.GetSession(ctx, sid())
				case 11:
					if r.IntN(4) == 0 {
						_, _ = e.CloseSession(ctx, sid())
					} else {
						_, _ = e.List(ctx, sid(), "")
					}
				case 12:
					clock.advance(time.Duration(r.IntN(1500)) * time.Millisecond)
				case 13:
					_, _ = e.ListSessions(ctx)
				}
			}
		}()
	}
	wg.Wait()
}

func journalConfig(clock *fakeClock, j Journal) Config {
	return Config{Now: clock.now, Journal: j, SessionTTL: 8 * time.Second,
		MaxVariablesPerSession: 6, MaxValueBytes: 64, HistoryRevisions: 25}
}

// A random history, applied live, then replayed from the journal alone
// (and from snapshots plus the log behind them) gives the same state,
// field for field.
func TestReplayReproducesState(t *testing.T) {
	for _, tc := range []struct {
		name          string
		snapshotEvery int
		failEvery     int
	}{
		{"log only", 0, 0},
		{"snapshots and log", 37, 0},
		// Every 9th append fails: the live engine reloads from the journal
		// and probes at the next write, again and again.
		{"failing appends", 37, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.failEvery > 0 {
				defer func(d time.Duration) { probeInterval = d }(probeInterval)
				probeInterval = 0
			}
			seed := rand.Uint64()
			if s, err := strconv.ParseUint(os.Getenv("VARWATCH_SEED"), 10, 64); err == nil {
				seed = s
			}
			t.Logf("seed %d (VARWATCH_SEED to repeat)", seed)
			clock := &fakeClock{}
			clock.ns.Store(1_700_000_000_000_000_000)
			mj := &memJournal{snapshotEvery: tc.snapshotEvery, failEvery: tc.failEvery}
			live, err := Open(journalConfig(clock, mj))
			if err != nil {
				t.Fatal(err)
			}
			defer live.Close()
			randomHistory(t, live, clock, seed, 4, 600)
			if tc.failEvery > 0 {
				// Let the journal work again, and a write probe it, so
				// that what degraded reads changed is journaled too.
				mj.mu.Lock()
				mj.failEvery = 0
				mj.mu.Unlock()
				waitFor(t, "writes to come back", func() bool {
					_, _, err := live.CreateSession(context.Background(), CreateSessionRequest{ID: "probe"})
					return err == nil
				})
			}

			var want stateDump
			inLoop(t, live, func(st *state) {
				st.expireDue(clock.now()) // as the replayed engine's first cycle will
				want = dumpState(st)
			})
			copied := mj.clone()
			if len(copied.records) < 200 {
				t.Fatalf("only %d records journaled: the history is too tame", len(copied.records))
			}
			if tc.snapshotEvery > 0 && copied.snap == nil {
				t.Fatal("no snapshot was taken")
			}
			replayed, err := Open(journalConfig(clock, copied))
			if err != nil {
				t.Fatal(err)
			}
			defer replayed.Close()
			var got stateDump
			inLoop(t, replayed, func(st *state) { got = dumpState(st) })
			if len(want.Sessions) == 0 {
				t.Fatal("no session survived the history: nothing compared")
			}
			compareDumps(t, want, got, clock.now())
		})
	}
}

// Commands carry the time they were submitted at, so under concurrency one
// submitted later can be applied first. A use applied after a later one
// must not move the session's last use back: the later use was journaled,
// the earlier one, moving the deadline backwards, was not, and a replay
// would put the deadline past the live one.
func TestUseNeverMovesLastUseBack(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{}
	live, err := Open(journalConfig(clock, mj))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, _, err := live.CreateSession(context.Background(), CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	t0 := clock.now()
	for _, at := range []time.Duration{2 * time.Second, time.Second} { // applied out of order
		inLoop(t, live, func(st *state) {
			if _, err := st.session("s", t0.Add(at)); err != nil {
				t.Fatal(err)
			}
		})
	}
	var want stateDump
	inLoop(t, live, func(st *state) { want = dumpState(st) })
	if got := time.Unix(0, want.Sessions["s"].LastUsed); !got.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("last use %s after uses at +2s and then +1s, want +2s", got.Sub(t0))
	}
	replayed, err := Open(journalConfig(clock, mj.clone()))
	if err != nil {
		t.Fatal(err)
	}
	defer replayed.Close()
	var got stateDump
	inLoop(t, replayed, func(st *state) { got = dumpState(st) })
	compareDumps(t, want, got, clock.now())
}

// A clean shutdown snapshots the state; the next start restores it alone.
func TestCloseSnapshotsState(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{}
	live, err := Open(journalConfig(clock, mj))
	if err != nil {
		t.Fatal(err)
	}
	randomHistory(t, live, clock, 7, 2, 300)
	var want stateDump
	inLoop(t, live, func(st *state) { st.expireDue(clock.now()); want = dumpState(st) })
	live.Close()
	if mj.snapThrough != len(mj.records) {
		t.Fatalf("snapshot covers %d of %d records", mj.snapThrough, len(mj.records))
	}
	again, err := Open(journalConfig(clock, &memJournal{snap: mj.snap}))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	var got stateDump
	inLoop(t, again, func(st *state) { got = dumpState(st) })
	compareDumps(t, want, got, clock.now())
}

// A session whose TTL ran out while the engine was down is gone at start.
func TestExpiredWhileDown(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{}
	e, _ := Open(journalConfig(clock, mj))
	ctx := context.Background()
	for _, id := range []string{"short", "long"} {
		ttl := time.Second
		if id == "long" {
			ttl = time.Hour
		}
		if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: id, TTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	e.Close()
	clock.advance(time.Minute)
	e, err := Open(journalConfig(clock, mj))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.GetSession(ctx, "short"); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("short-lived session after restart: %v, want ErrSessionNotFound", err)
	}
	if _, err := e.GetSession(ctx, "long"); err != nil {
		t.Fatalf("long-lived session after restart: %v", err)
	}
}

// A record with one flipped byte stops the load: nothing is invented.
func TestCorruptRecordStopsLoad(t *testing.T) {
	clock := &fakeClock{}
	mj := &memJournal{}
	e, _ := Open(journalConfig(clock, mj))
	randomHistory(t, e, clock, 3, 1, 100)
	c := mj.clone()
	e.Close()
	for i := range c.records {
		rec := bytes.Clone(c.records[i])
		rec[len(rec)/2] ^= 0x10
		bad := &memJournal{records: append(append(append([][]byte(nil), c.records[:i]...), rec), c.records[i+1:]...)}
		_, err := Open(journalConfig(clock, bad))
		if !errors.Is(err, errCorrupt) {
			t.Fatalf("record %d with a flipped byte: Open returned %v, want errCorrupt", i+1, err)
		}
	}
}

// A failed append fails its batch with ErrUnavailable and ends every
// watch; no watcher sees the failed change. Reads and new watches go on at
// the durable state while writes fail, and writes come back once the
// journal takes them again.
func TestFailedAppendDegradesThenRecovers(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{}
	e, _ := Open(journalConfig(clock, mj))
	defer e.Close()
	ctx := context.Background()
	if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	reg, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "x", Type: TypeInteger, Value: Integer(1)})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	mj.mu.Lock()
	mj.failAppend = errors.New("disk full")
	mj.mu.Unlock()
	if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(2)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("set with a failing journal: %v, want ErrUnavailable", err)
	}
	endsUnseen(t, sub)
	v, err := e.Get(ctx, "s", "x")
	if err != nil || v.Value.Integer() != 1 {
		t.Fatalf("read while degraded: %v, %v; want the durable value 1", v, err)
	}
	if got := e.StorageState(); got != StorageDegraded {
		t.Fatalf("storage state %s while writes fail, want degraded", got)
	}
	resumed, err := e.Watch(ctx, WatchRequest{Session: "s", Variables: []string{"x"}, Resume: true, StartRevision: reg.Revision})
	if err != nil {
		t.Fatalf("resume while degraded: %v", err)
	}
	defer resumed.Close()
	if _, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "y", Type: TypeInteger, Value: Integer(1)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("register while degraded: %v, want ErrUnavailable", err)
	}

	mj.mu.Lock()
	mj.failAppend = nil
	mj.mu.Unlock()
	var res SetResult
	waitFor(t, "writes to come back", func() bool {
		res, err = e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(3)})
		return err == nil
	})
	if res.Revision != reg.Revision+1 {
		t.Fatalf("first write after recovery at revision %d, want %d", res.Revision, reg.Revision+1)
	}
	if got := e.StorageState(); got != StorageOK {
		t.Fatalf("storage state %s after recovery, want ok", got)
	}
	if ev := nextEvent(t, resumed); ev.Type != EventValueChange || ev.Revision != res.Revision || ev.Variable.Value.Integer() != 3 {
		t.Fatalf("resumed watch got %+v, want the write at revision %d", ev, res.Revision)
	}
	again, err := Open(journalConfig(clock, mj.clone()))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if v, err := again.Get(ctx, "s", "x"); err != nil || v.Value.Integer() != 3 || v.ModRevision != res.Revision {
		t.Fatalf("after a restart x is %v, %v; want 3 at revision %d", v, err, res.Revision)
	}
}

// Limits lowered between two runs do not refuse what the journal holds:
// those changes passed the limits of their day.
func TestReplayIgnoresLaterLimits(t *testing.T) {
	clock := &fakeClock{}
	mj := &memJournal{}
	e, _ := Open(Config{Now: clock.now, Journal: mj})
	ctx := context.Background()
	for i := range 3 {
		id := "s" + strconv.Itoa(i)
		if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		for k := range 4 {
			if _, err := e.Register(ctx, RegisterRequest{Session: id, Name: "v" + strconv.Itoa(k), Type: TypeString, Value: String("0123456789")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := mj.clone()
	e.Close()
	strict := Config{Now: clock.now, Journal: c, MaxSessions: 1, MaxVariablesPerSession: 1, MaxValueBytes: 2}
	e, err := Open(strict)
	if err != nil {
		t.Fatalf("replay under lower limits: %v", err)
	}
	defer e.Close()
	sessions, _ := e.ListSessions(ctx)
	if len(sessions) != 3 || sessions[2].VariableCount != 4 {
		t.Fatalf("after replay: %+v", sessions)
	}
	if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "new"}); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("a new session past the new limit: %v, want ErrLimitExceeded", err)
	}
}

// Writes that the engine checks off the loop replay exactly: a set to a
// variable with a pattern (its verdict made by the caller, in a second
// trip), a set with large metadata (merged by the caller), and a
// registration with metadata. Replay has no caller: it must make those
// checks itself, or the set would silently not apply.
func TestReplayOfOffLoopChecks(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(1_700_000_000_000_000_000)
	mj := &memJournal{}
	cfg := journalConfig(clock, mj)
	cfg.MaxVariablesPerSession, cfg.MaxValueBytes = 0, 0
	// Replay runs with the default metadata limits, far lower: it must
	// apply what the log holds whatever the limits are now.
	cfg.MaxMetadataEntries, cfg.MaxMetadataBytes, cfg.MaxSessionMetadataBytes = -1, -1, -1
	live, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := live.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Register(ctx, RegisterRequest{Session: "s", Name: "p", Type: TypeString, Value: String("a"),
		Constraints: Constraints{Pattern: "[a-z]+"}, Metadata: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	big := map[string]string{}
	for i := range 5000 { // past what the loop merges itself
		big["k"+strconv.Itoa(i)] = "v"
	}
	for _, set := range []SetRequest{
		{Session: "s", Variable: "p", Value: String("ok")},
		{Session: "s", Variable: "p", Value: String("fine"), Metadata: big},
		{Session: "s", Variable: "p", Value: String("again"), Metadata: map[string]string{"k": "w"}},
	} {
		if _, err := live.Set(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	var want stateDump
	inLoop(t, live, func(st *state) { want = dumpState(st) })
	live.Close()
	if v := want.Sessions["s"].Vars["1"]; v.Version != 4 || len(v.Metadata) != 5001 {
		t.Fatalf("live variable at version %d with %d metadata entries: the test did not do what it says", v.Version, len(v.Metadata))
	}

	// From the log alone, then from the snapshot Close took.
	replaysTo(t, mj, clock, want)
}
