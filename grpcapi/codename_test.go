package grpcapi

import (
	"testing"

	"google.golang.org/grpc/codes"
)

// TestCodeName: codes as the gRPC spec spells them, CANCELLED included
// (the Go constant says Canceled).
func TestCodeName(t *testing.T) {
	for c, want := range map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELLED", codes.NotFound: "NOT_FOUND",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Unavailable: "UNAVAILABLE",
	} {
		if got := CodeName(c); got != want {
			t.Errorf("CodeName(%v) = %q, want %q", c, got, want)
		}
	}
}
