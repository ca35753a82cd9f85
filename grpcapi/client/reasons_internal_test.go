package client

import (
	"testing"

	"github.com/varwatch/varwatch/grpcapi"
)

// TestReasonsAreTheServers: the reasons the client decides on, declared
// here so that the client does not import the server, are spelled as the
// server's error table spells them.
func TestReasonsAreTheServers(t *testing.T) {
	for _, tc := range []struct{ client, server string }{
		{errorDomain, grpcapi.ErrorDomain},
		{reasonSlowConsumer, grpcapi.ReasonSlowConsumer},
		{reasonIncarnationChanged, grpcapi.ReasonIncarnationChanged},
	} {
		if tc.client != tc.server {
			t.Errorf("client says %q, server %q", tc.client, tc.server)
		}
	}
}
