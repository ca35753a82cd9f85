package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// limitedLog is a fakeLog that refuses, as cluster.Log does, a message
// larger than max with a *LimitError.
type limitedLog struct {
	*fakeLog
	max int
}

func (l limitedLog) Propose(id string, msg []byte, done func(uint64, error)) {
	if len(msg) > l.max {
		done(0, &LimitError{Limit: "log_max_message", Value: int64(l.max), Detail: "too large"})
		return
	}
	l.fakeLog.Propose(id, msg, done)
}

// A write the log refuses as too large fails with the log's LimitError,
// not as ErrLogUnavailable (which tells the caller it may have applied):
// it did not, and retrying cannot help. Writes after it apply.
func TestReplicatedLogLimit(t *testing.T) {
	ctx := context.Background()
	l := limitedLog{newFakeLog(), 4 << 10}
	e := New(Config{Log: l})
	f := l.follow(e)
	defer func() {
		close(f.stop)
		<-f.exited
		e.Close()
	}()
	sessionWithX(t, e)
	_, err := e.Register(ctx, RegisterRequest{Session: "s", Name: "big", Type: TypeString, Value: String(strings.Repeat("v", 8<<10))})
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "log_max_message" || errors.Is(err, ErrUnavailable) {
		t.Fatalf("a write larger than the log takes: %v; want the log's LimitError, not ErrUnavailable", err)
	}
	if _, err := e.Get(ctx, "s", "big"); !errors.Is(err, ErrVariableNotFound) {
		t.Fatalf("the refused variable: %v", err)
	}
	if _, err := e.Set(ctx, SetRequest{Session: "s", Variable: "x", Value: Integer(1)}); err != nil {
		t.Fatalf("a write after the refused one: %v", err)
	}
}
