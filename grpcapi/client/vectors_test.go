package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// The shared resume test vectors, which the Python client's tests read
// too (clients/python/tests/test_resume_vectors.py): see the file's
// "about" for what a case holds.
const vectorsFile = "../../clients/testdata/resume_vectors.json"

type vectorUpdate struct {
	Type        string `json:"type"`
	Revision    int64  `json:"revision"`
	ID          string `json:"id,omitempty"`
	Name        string `json:"name,omitempty"`
	Value       *int64 `json:"value,omitempty"`
	Incarnation string `json:"incarnation,omitempty"`
}

type vectorEnd struct {
	Break    bool              `json:"break"`
	Code     string            `json:"code"`
	Message  string            `json:"message"`
	Reason   string            `json:"reason"`
	Metadata map[string]string `json:"metadata"`
}

type vectorRequest struct {
	StartRevision        *int64 `json:"start_revision"`
	IncludeInitialValues bool   `json:"include_initial_values"`
	Incarnation          string `json:"incarnation"`
}

type vectorCase struct {
	Name    string `json:"name"`
	Request struct {
		Variables            []string `json:"variables"`
		IncludeInitialValues bool     `json:"include_initial_values"`
		StartRevision        *int64   `json:"start_revision"`
		Incarnation          string   `json:"incarnation"`
	} `json:"request"`
	Resnapshot bool `json:"resnapshot"`
	Streams    []struct {
		Updates []vectorUpdate `json:"updates"`
		End     vectorEnd      `json:"end"`
	} `json:"streams"`
	Requests  []vectorRequest `json:"requests"`
	Delivered []vectorUpdate  `json:"delivered"`
	Error     json.RawMessage `json:"error"`
}

// codeByName is the canonical name of each status code, as the file spells it.
var codeByName = map[string]codes.Code{"OK": codes.OK, "CANCELLED": codes.Canceled, "UNKNOWN": codes.Unknown,
	"INVALID_ARGUMENT": codes.InvalidArgument, "DEADLINE_EXCEEDED": codes.DeadlineExceeded,
	"NOT_FOUND": codes.NotFound, "ALREADY_EXISTS": codes.AlreadyExists, "PERMISSION_DENIED": codes.PermissionDenied,
	"RESOURCE_EXHAUSTED": codes.ResourceExhausted, "FAILED_PRECONDITION": codes.FailedPrecondition,
	"ABORTED": codes.Aborted, "OUT_OF_RANGE": codes.OutOfRange, "UNIMPLEMENTED": codes.Unimplemented,
	"INTERNAL": codes.Internal, "UNAVAILABLE": codes.Unavailable, "DATA_LOSS": codes.DataLoss,
	"UNAUTHENTICATED": codes.Unauthenticated}

// scriptedBridge answers WatchVariables with the case's streams, one per
// call, and records the requests.
type scriptedBridge struct {
	pb.UnifiedBridgeClient // nil: only WatchVariables is called
	c                      *vectorCase
	requests               []*pb.WatchVariablesRequest
}

func (b *scriptedBridge) WatchVariables(ctx context.Context, req *pb.WatchVariablesRequest, _ ...grpc.CallOption) (pb.UnifiedBridge_WatchVariablesClient, error) {
	n := len(b.requests)
	b.requests = append(b.requests, req)
	if n >= len(b.c.Streams) {
		// More attempts than the case scripts: fail the watch so the test
		// reports the extra request instead of hanging.
		return nil, status.Error(codes.DataLoss, "the case has no more streams")
	}
	s := b.c.Streams[n]
	return &scriptedStream{ctx: ctx, updates: s.Updates, end: s.End}, nil
}

type scriptedStream struct {
	grpc.ClientStream
	ctx     context.Context
	updates []vectorUpdate
	end     vectorEnd
}

func (s *scriptedStream) Header() (metadata.MD, error) { return nil, nil }

func (s *scriptedStream) Recv() (*pb.VariableUpdate, error) {
	if len(s.updates) > 0 {
		u := s.updates[0]
		s.updates = s.updates[1:]
		return toUpdate(u), nil
	}
	if s.end.Break {
		return nil, status.Error(codes.Unavailable, "connection reset")
	}
	code := codeByName[s.end.Code]
	if code == codes.OK {
		return nil, io.EOF
	}
	st := status.New(code, s.end.Message)
	if s.end.Reason != "" {
		st, _ = st.WithDetails(&errdetails.ErrorInfo{Reason: s.end.Reason, Domain: "varwatch.v1", Metadata: s.end.Metadata})
	}
	return nil, st.Err()
}

func toUpdate(u vectorUpdate) *pb.VariableUpdate {
	up := &pb.VariableUpdate{UpdateType: u.Type, Revision: u.Revision, VariableId: u.ID, Incarnation: u.Incarnation}
	if u.Name != "" {
		up.Variable = &pb.Variable{Id: u.ID, Name: u.Name, Value: &pb.Value{Kind: &pb.Value_IntegerValue{IntegerValue: *u.Value}}}
	}
	return up
}

func fromUpdate(up *pb.VariableUpdate) vectorUpdate {
	u := vectorUpdate{Type: up.GetUpdateType(), Revision: up.GetRevision(), ID: up.GetVariableId()}
	if up.Variable != nil {
		v := up.GetVariable().GetValue().GetIntegerValue()
		u.Value = &v
	}
	return u
}

// endOf is how the file names a watch's end: "EOF", or code and reason.
func endOf(err error) any {
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	reason := ""
	if info := errorInfo(err); info != nil {
		reason = info.GetReason()
	}
	if errors.Is(err, ErrIncarnationChanged) {
		reason = "SESSION_INCARNATION_CHANGED"
	}
	for name, code := range codeByName {
		if code == status.Code(err) {
			return map[string]any{"code": name, "reason": reason}
		}
	}
	return err.Error()
}

func TestResumeVectors(t *testing.T) {
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Cases []vectorCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Cases) == 0 {
		t.Fatal("no cases")
	}
	for i := range file.Cases {
		tc := &file.Cases[i]
		t.Run(tc.Name, func(t *testing.T) {
			bridge := &scriptedBridge{c: tc}
			c := &Client{UnifiedBridgeClient: bridge}
			req := &pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: tc.Request.Variables,
				IncludeInitialValues: tc.Request.IncludeInitialValues, StartRevision: tc.Request.StartRevision,
				Incarnation: tc.Request.Incarnation}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			w := c.Watch(ctx, req, WatchOptions{Dedicated: true, Resnapshot: tc.Resnapshot, MaxBackoff: time.Millisecond})
			defer w.Close()
			var got []vectorUpdate
			var end error
			for {
				up, err := w.Next()
				if err != nil {
					end = err
					break
				}
				got = append(got, fromUpdate(up))
			}

			var requests []vectorRequest
			for _, r := range bridge.requests {
				requests = append(requests, vectorRequest{StartRevision: r.StartRevision,
					IncludeInitialValues: r.GetIncludeInitialValues(), Incarnation: r.GetIncarnation()})
			}
			if !reflect.DeepEqual(jsonOf(t, requests), jsonOf(t, tc.Requests)) {
				t.Errorf("requests:\n got %s\nwant %s", jsonOf(t, requests), jsonOf(t, tc.Requests))
			}
			if !reflect.DeepEqual(jsonOf(t, got), jsonOf(t, tc.Delivered)) {
				t.Errorf("delivered:\n got %s\nwant %s", jsonOf(t, got), jsonOf(t, tc.Delivered))
			}
			var want any
			if err := json.Unmarshal(tc.Error, &want); err != nil {
				t.Fatal(err)
			}
			if gotEnd := jsonOf(t, endOf(end)); gotEnd != jsonOf(t, want) {
				t.Errorf("end: got %s (%v), want %s", gotEnd, end, jsonOf(t, want))
			}
		})
	}
}

// jsonOf is v as canonical JSON, so that nil and empty lists, and
// pointers and values, compare as the file spells them.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var back any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if l, ok := back.([]any); ok && len(l) == 0 {
		back = nil
	}
	b, _ = json.Marshal(back)
	return string(b)
}
