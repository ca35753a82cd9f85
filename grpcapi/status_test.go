package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
)

func TestCodeFor(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"nil", nil, codes.OK},
		{"invalid argument", fmt.Errorf("%w: bad", engine.ErrInvalidArgument), codes.InvalidArgument},
		{"session not found", engine.ErrSessionNotFound, codes.NotFound},
		{"variable not found", engine.ErrVariableNotFound, codes.NotFound},
		{"already exists", engine.ErrAlreadyExists, codes.AlreadyExists},
		{"version conflict", &engine.VersionConflictError{Variable: "x", Expected: 1, Current: 2}, codes.Aborted},
		{"wrapped version conflict", fmt.Errorf("update 1: %w", &engine.VersionConflictError{}), codes.Aborted},
		{"limit exceeded", engine.ErrLimitExceeded, codes.ResourceExhausted},
		{"slow consumer", engine.ErrSlowConsumer, codes.ResourceExhausted},
		{"compacted", engine.ErrCompacted, codes.OutOfRange},
		{"closed", engine.ErrClosed, codes.Unavailable},
		{"storage unavailable", fmt.Errorf("%w: disk full", engine.ErrUnavailable), codes.Unavailable},
		{"unsubscribed", engine.ErrUnsubscribed, codes.Canceled},
		{"canceled", context.Canceled, codes.Canceled},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"status passes through", status.Error(codes.Unimplemented, "later"), codes.Unimplemented},
		{"unknown kind", errors.New("boom"), codes.Internal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := codeFor(tc.err); got != tc.want {
				t.Fatalf("codeFor(%v) = %v, want %v", tc.err, got, tc.want)
			}
			if got := status.Code(toStatus(tc.err)); got != tc.want {
				t.Fatalf("toStatus(%v) has code %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// A write the server could not log says so in a reason clients can test.
func TestStorageUnavailableHasReason(t *testing.T) {
	err := toStatus(fmt.Errorf("%w: write wal/1.wal: no space left on device", engine.ErrUnavailable))
	if info := errorInfo(t, err); info.Reason != ReasonStorageUnavailable || info.Domain != ErrorDomain {
		t.Fatalf("ErrorInfo %+v, want reason %s", info, ReasonStorageUnavailable)
	}
	if got := status.Convert(err).Message(); got != "write wal/1.wal: no space left on device" {
		t.Fatalf("message %q", got)
	}
}

func TestToStatusMessage(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: no variable %q in session %q", engine.ErrVariableNotFound, "x", "s"), `no variable "x" in session "s"`},
		{fmt.Errorf("update 1 (%q): %w", "x", fmt.Errorf("%w: value 5 violates constraint max 4", engine.ErrInvalidArgument)), `update 1 ("x"): value 5 violates constraint max 4`},
		{&engine.VersionConflictError{Variable: "x", Expected: 1, Current: 2}, `version conflict on "x": expected version 1, current version is 2`},
		{engine.ErrClosed, "closed"},
	}
	for _, tc := range tests {
		if got := status.Convert(toStatus(tc.err)).Message(); got != tc.want {
			t.Errorf("message %q, want %q", got, tc.want)
		}
	}
}
