package cli

import (
	"testing"

	"github.com/varwatch/varwatch/grpcapi"
)

// TestReasonsAreTheServers: the reasons watchEnded decides on are spelled
// as the server's error table spells them.
func TestReasonsAreTheServers(t *testing.T) {
	for _, tc := range []struct{ cli, server string }{
		{reasonShuttingDown, grpcapi.ReasonShuttingDown},
		{reasonSlowConsumer, grpcapi.ReasonSlowConsumer},
		{reasonStorageUnavailable, grpcapi.ReasonStorageUnavailable},
		{reasonCompacted, grpcapi.ReasonCompacted},
		{reasonUnimplemented, grpcapi.ReasonUnimplemented},
		{reasonFilterFailed, grpcapi.ReasonFilterFailed},
	} {
		if tc.cli != tc.server {
			t.Errorf("the CLI says %q, the server %q", tc.cli, tc.server)
		}
	}
}
