package grpcapi

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// reasonChecker fails the test for any error status a handler (or an
// interceptor inside it, such as Auth's) returns without a varwatch
// ErrorInfo whose reason is in reasonTable and travels with its code.
// serveLoopback installs one on every test server, so every test of this
// package checks the error table on every status it provokes.
type reasonChecker struct{ t *testing.T }

func reasonCheck(t *testing.T) reasonChecker { return reasonChecker{t} }

func (c reasonChecker) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	c.check(info.FullMethod, err)
	return resp, err
}

func (c reasonChecker) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	c.check(info.FullMethod, err)
	return err
}

func (c reasonChecker) check(method string, err error) {
	if err == nil || !strings.HasPrefix(method, "/varwatch.") {
		return // reflection and health are gRPC's services, not ours
	}
	if problem := reasonProblem(err); problem != "" {
		c.t.Errorf("%s answered %v: %s", method, err, problem)
	}
}

// reasonProblem says what is wrong with err's ErrorInfo, or "" if nothing.
func reasonProblem(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return "not a status error"
	}
	info := infoOf(st)
	if info == nil {
		return "no ErrorInfo of domain " + ErrorDomain
	}
	code, known := reasonCode[info.GetReason()]
	switch {
	case !known:
		return "reason " + info.GetReason() + " is not in reasonTable"
	case code != st.Code():
		return "reason " + info.GetReason() + " travels with " + code.String()
	}
	return ""
}
