package plugins

import (
	"context"
	"errors"
	"strings"

	"github.com/tetratelabs/wazero/sys"
)

// memoryMarginPages is how close to its limit an instance's memory must be
// for a trap or exit to count as a memory fault: a guest's failed
// memory.grow usually ends in a trap (WAT, C) or an exit (Go's "out of
// memory"), not in a distinct error, so the host infers it. Go grows its
// heap in steps of up to 4 MiB, hence 64 pages (a quarter of the limit for
// small limits).
const memoryMarginPages = 64

// classify turns an error from an instance call into a fault. ctx is the
// caller's context (without the per-batch deadline): when it is done the
// caller gave up and nothing is the plugin's fault, which classify reports
// with ok=false.
func classify(ctx context.Context, in *instance, err error) (f *fault, ok bool) {
	if ctx.Err() != nil {
		return nil, false
	}
	if errors.As(err, &f) {
		return f, true
	}
	kind := FaultTrap
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			kind = FaultTimeout
		case sys.ExitCodeContextCanceled:
			// Only our own deadline context is ever canceled here, and
			// only after the call returned, so this cannot happen; treat
			// it as the timeout it would be.
			kind = FaultTimeout
		default:
			kind = FaultExit
		}
	}
	if kind == FaultTrap || kind == FaultExit {
		limit := in.p.cfg.memoryLimitPages()
		headline := in.stderr.headline
		switch {
		case in.memoryPages()+min(memoryMarginPages, limit/4) >= limit || strings.Contains(headline, "out of memory"):
			kind = FaultMemory
		case strings.HasPrefix(headline, "panic: "):
			kind = FaultPanic
		}
	}
	return &fault{kind: kind, err: in.describe(err)}, true
}
