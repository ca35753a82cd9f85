package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkLimit fails t unless err is a *LimitError of limit with value.
func checkLimit(t *testing.T, err error, limit string, value int64) {
	t.Helper()
	var le *LimitError
	if !errors.Is(err, ErrLimitExceeded) || !errors.As(err, &le) {
		t.Fatalf("got %v, want a *LimitError of %s", err, limit)
	}
	if le.Limit != limit || le.Value != value || !strings.Contains(err.Error(), limit) {
		t.Fatalf("got limit %s=%d (%v), want %s=%d", le.Limit, le.Value, err, limit, value)
	}
}

func TestLimits(t *testing.T) {
	ctx := context.Background()
	big := String(strings.Repeat("x", 9)) // over MaxValueBytes: 8
	tests := []struct {
		name  string
		limit string
		value int64
		// do runs against a session "s" holding a=Integer(0), b=String("")
		// (and session "t"), with every limit at 2 sessions, 2 variables and
		// 8 value bytes; it returns the error of the request at the limit.
		do func(e *Engine) error
	}{
		{"session over max_sessions", LimitSessions, 2, func(e *Engine) error {
			_, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "u"})
			return err
		}},
		{"register over max_variables_per_session", LimitVariablesPerSession, 2, func(e *Engine) error {
			_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "c", Type: TypeInteger, Value: Integer(1)})
			return err
		}},
		{"register with a value over max_value_bytes", LimitValueBytes, 8, func(e *Engine) error {
			_, err := e.Register(ctx, RegisterRequest{Session: "t", Name: "c", Type: TypeString, Value: big})
			return err
		}},
		{"set over max_value_bytes", LimitValueBytes, 8, func(e *Engine) error {
			_, err := e.Set(ctx, SetRequest{Session: "s", Variable: "b", Value: big})
			return err
		}},
		{"embedding over max_value_bytes", LimitValueBytes, 8, func(e *Engine) error {
			_, err := e.Register(ctx, RegisterRequest{Session: "t", Name: "c", Type: TypeEmbedding, Value: Embedding([]float32{1, 2, 3})})
			return err
		}},
		{"tensor over max_value_bytes", LimitValueBytes, 8, func(e *Engine) error {
			_, err := e.Register(ctx, RegisterRequest{Session: "t", Name: "c", Type: TypeTensor,
				Value: TensorOf(Tensor{Shape: []int64{1}, DType: "uint8", Data: []byte{1}})})
			return err
		}},
		{"atomic set many with one value over max_value_bytes", LimitValueBytes, 8, func(e *Engine) error {
			_, err := e.SetMany(ctx, SetManyRequest{Session: "s", Atomic: true, Sets: []SetRequest{
				{Variable: "a", Value: Integer(7)}, {Variable: "b", Value: big}}})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(Config{MaxSessions: 2, MaxVariablesPerSession: 2, MaxValueBytes: 8})
			defer e.Close()
			mustCreate(t, e, "s")
			mustCreate(t, e, "t")
			mustRegister(t, e, "s", "a", Integer(0))
			mustRegister(t, e, "s", "b", String(""))
			before := snapshotState(t, e, "s") + snapshotState(t, e, "t")

			checkLimit(t, tc.do(e), tc.limit, tc.value)

			if after := snapshotState(t, e, "s") + snapshotState(t, e, "t"); after != before {
				t.Fatalf("state changed:\nbefore %s\nafter  %s", before, after)
			}
			if got := mustStats(t, e).LimitRejections[tc.limit]; got != 1 {
				t.Fatalf("Stats().LimitRejections[%s] = %d, want 1", tc.limit, got)
			}
		})
	}
}

func TestLimitsLeaveRoomAgain(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := New(Config{Now: clock, MaxSessions: 1, MaxVariablesPerSession: 1, MaxValueBytes: 8})
	defer e.Close()
	fits := String(strings.Repeat("x", 8))
	big := String(strings.Repeat("x", 9))

	steps := []struct {
		name string
		do   func() error
		want string // limit name, or "" for success
	}{
		{"first session", func() error {
			_, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s", TTL: time.Minute})
			return err
		}, ""},
		{"an existing id is no new session", func() error { _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"}); return err }, ""},
		{"second session", func() error { _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "t"}); return err }, LimitSessions},
		{"a value at the limit", func() error {
			_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "v", Type: TypeString, Value: fits})
			return err
		}, ""},
		{"second variable", func() error {
			_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "w", Type: TypeString, Value: fits})
			return err
		}, LimitVariablesPerSession},
		{"non-atomic set many applies what fits", func() error {
			res, err := e.SetMany(ctx, SetManyRequest{Session: "s", Sets: []SetRequest{{Variable: "v", Value: big}, {Variable: "v", Value: String("ok")}}})
			if err != nil {
				return err
			}
			if res.Items[1].Err != nil || res.Items[1].Variable.Value.Str() != "ok" {
				t.Fatalf("second item: %+v", res.Items[1])
			}
			return res.Items[0].Err
		}, LimitValueBytes},
		{"deleting makes room for a variable", func() error {
			if _, err := e.Delete(ctx, "s", "v"); err != nil {
				return err
			}
			_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "w", Type: TypeString, Value: fits})
			return err
		}, ""},
		{"an expired session makes room at once", func() error {
			mu.Lock()
			now = now.Add(time.Minute)
			mu.Unlock()
			_, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "t"})
			return err
		}, ""},
	}
	for _, step := range steps { // in order: each step builds on the last
		err := step.do()
		if step.want == "" {
			if err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			continue
		}
		var le *LimitError
		if !errors.As(err, &le) || le.Limit != step.want {
			t.Fatalf("%s: got %v, want limit %s", step.name, err, step.want)
		}
	}
	st := mustStats(t, e)
	if st.SessionsExpired != 1 || st.Sessions != 1 || st.SessionsCreated != 2 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestLimitDefaultsAndUnlimited(t *testing.T) {
	tests := []struct {
		name                       string
		in                         Config
		sessions, vars, valueBytes int
	}{
		{"zero is the default", Config{}, DefaultMaxSessions, DefaultMaxVariablesPerSession, DefaultMaxValueBytes},
		{"negative is no limit", Config{MaxSessions: -1, MaxVariablesPerSession: -1, MaxValueBytes: -1}, -1, -1, -1},
		{"set values stay", Config{MaxSessions: 3, MaxVariablesPerSession: 4, MaxValueBytes: 5}, 3, 4, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.in.withDefaults()
			if c.MaxSessions != tc.sessions || c.MaxVariablesPerSession != tc.vars || c.MaxValueBytes != tc.valueBytes {
				t.Fatalf("got %d %d %d", c.MaxSessions, c.MaxVariablesPerSession, c.MaxValueBytes)
			}
		})
	}
	e := New(Config{MaxValueBytes: -1})
	defer e.Close()
	mustCreate(t, e, "s")
	mustRegister(t, e, "s", "big", String(strings.Repeat("x", 2*DefaultMaxValueBytes)))
}

func TestValueBytes(t *testing.T) {
	tests := []struct {
		name string
		v    Value
		want int
	}{
		{"none", Value{}, 0},
		{"float", Float(1), 8},
		{"boolean", Boolean(true), 8},
		{"string", String("abc"), 3},
		{"choice", Choice("ab"), 2},
		{"module", Module("torch"), 5},
		{"embedding", Embedding([]float32{1, 2}), 8},
		{"tensor", TensorOf(Tensor{Shape: []int64{2, 2}, DType: "uint8", Data: []byte{1, 2, 3, 4}}), 4 + 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValueBytes(tc.v); got != tc.want {
				t.Fatalf("ValueBytes = %d, want %d", got, tc.want)
			}
		})
	}
}
