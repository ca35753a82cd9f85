package grpcapi

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/varwatch/varwatch/engine"
	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// Rows of issue 11 over the wire: hostile metadata is refused with
// RESOURCE_EXHAUSTED and LIMIT_EXCEEDED details before it applies, an
// answer never reports an applied write as failed, and watchers are never
// cut off by an update too large to send.

// limitOf fails unless err is RESOURCE_EXHAUSTED with a LIMIT_EXCEEDED
// ErrorInfo, and returns the limit it names.
func limitOf(t *testing.T, err error) string {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == ReasonLimitExceeded && info.GetDomain() == ErrorDomain {
			return info.GetMetadata()["limit"]
		}
	}
	t.Fatalf("%v carries no %s ErrorInfo: not a limit the server checked before applying", err, ReasonLimitExceeded)
	return ""
}

func metaOf(n, valueBytes int, prefix string) map[string]string {
	m := make(map[string]string, n)
	v := strings.Repeat("m", valueBytes)
	for i := range n {
		m[fmt.Sprintf("%s%06d", prefix, i)] = v
	}
	return m
}

// readable fails unless x of session s reads back at version.
func (h *harness) readable(s, x string, version int64) {
	h.t.Helper()
	resp, err := h.client.GetVariable(h.ctx(), &pb.GetVariableRequest{SessionId: s, VariableIdentifier: x})
	if err != nil {
		h.t.Fatalf("the variable can no longer be read: %v", err)
	}
	if got := resp.GetVariable().GetVersion(); got != version {
		h.t.Fatalf("version %d, want %d: a refused write applied", got, version)
	}
}

func TestHostileMetadataIsRefusedBeforeItApplies(t *testing.T) {
	tests := []struct {
		name   string
		engine engine.Config
		meta   map[string]string
		limit  string // "" for any limit
	}{
		{"200k entries", engine.Config{}, metaOf(200000, 1, "k"), ""},
		{"2.3 MB of metadata", engine.Config{}, metaOf(23, 100000, "k"), ""},
		{"2.3 MB with the metadata limits off: the update would not fit", engine.Config{
			MaxMetadataEntries: -1, MaxMetadataKeyBytes: -1, MaxMetadataValueBytes: -1, MaxMetadataBytes: -1, MaxSessionMetadataBytes: -1,
		}, metaOf(23, 100000, "k"), engine.LimitSendMessageBytes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{engine: tc.engine})
			h.createSession("s")
			h.register("s", "x", pb.VariableType_VARIABLE_TYPE_STRING, strV(""), nil)
			w := h.watch(&pb.WatchVariablesRequest{SessionId: "s", VariableIdentifiers: []string{"x"}})
			before := h.stateOf()

			_, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x",
				Value: strV("hostile"), Metadata: tc.meta})
			if got := limitOf(t, err); tc.limit != "" && got != tc.limit {
				t.Fatalf("limit %s, want %s", got, tc.limit)
			}
			if after := h.stateOf(); after != before {
				t.Fatalf("state changed:\nbefore %s\nafter  %s", before, after)
			}
			h.readable("s", "x", 1)
			// The watcher was not cut off: it sees the next write, and
			// never the refused one.
			h.set("s", "x", strV("next"))
			if u := w.nextData(); u.GetVariable().GetValue().GetStringValue() != "next" {
				t.Fatalf("watcher got %v, want the write after the refused one", u)
			}
		})
	}
}

// TestMergedMetadataPastTheLimit: sets whose metadata merges past what
// can be sent. Before, the set that took it past 4 MiB was applied and
// answered RESOURCE_EXHAUSTED (its answer could not be sent), and the
// variable could no longer be read.
func TestMergedMetadataPastTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		engine engine.Config
	}{
		{"default limits", engine.Config{}},
		{"metadata limits off", engine.Config{MaxMetadataEntries: -1, MaxMetadataKeyBytes: -1,
			MaxMetadataValueBytes: -1, MaxMetadataBytes: -1, MaxSessionMetadataBytes: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{engine: tc.engine})
			h.createSession("s")
			h.register("s", "x", pb.VariableType_VARIABLE_TYPE_STRING, strV(""), nil)
			version := int64(1)
			for i := range 5 { // 1.5 MB of new keys each: merged, 7.5 MB
				_, err := h.client.SetVariable(h.ctx(), &pb.SetVariableRequest{SessionId: "s", VariableIdentifier: "x",
					Value: strV("v"), Metadata: metaOf(15, 100000, fmt.Sprintf("set%d-", i))})
				if err == nil {
					version++
					continue
				}
				limitOf(t, err)
				h.readable("s", "x", version)
				return
			}
			t.Fatal("7.5 MB of metadata merged into one variable, none refused")
		})
	}
}

// TestWatchSlowConsumerByBytes: a stream whose waiting updates pass the
// subscription byte bound is cut off like one past the count bound:
// RESOURCE_EXHAUSTED, SLOW_CONSUMER, naming the revision to resume from.
func TestWatchSlowConsumerByBytes(t *testing.T) {
	h := newHarness(t, harnessOptions{engine: engine.Config{SubscriptionBytes: 1 << 20}})
	h.createSession("s")
	for _, name := range []string{"x", "y", "z"} {
		h.register("s", name, pb.VariableType_VARIABLE_TYPE_STRING, strV(""), nil)
	}
	w := h.watch(&pb.WatchVariablesRequest{SessionId: "s"})
	h.set("s", "x", strV("small"))
	wantUpdate(t, w.nextData(), "value_change", "x", 4)
	big := strings.Repeat("v", 400<<10) // three of them: past 1 MiB in one publish
	_, err := h.client.SetVariables(h.ctx(), &pb.SetVariablesRequest{SessionId: "s", Atomic: true, Updates: []*pb.SetVariableRequest{
		{VariableIdentifier: "x", Value: strV(big)}, {VariableIdentifier: "y", Value: strV(big)}, {VariableIdentifier: "z", Value: strV(big)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = w.end()
	wantCode(t, err, codes.ResourceExhausted)
	var info *errdetails.ErrorInfo
	for _, d := range status.Convert(err).Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info.GetReason() != ReasonSlowConsumer || info.GetMetadata()["resume_revision"] != "4" {
		t.Fatalf("details %v: want %s with resume_revision 4", info, ReasonSlowConsumer)
	}
}
