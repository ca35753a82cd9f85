package plugins

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/varwatch/varwatch/plugins/abi"
)

// minInitTimeout is the floor of the deadline for instantiating and
// initializing an instance: a Go plugin's runtime start takes milliseconds,
// more than a per-batch deadline is meant to allow.
var minInitTimeout = 5 * time.Second

// minInputCap is the smallest input buffer an instance asks its guest for,
// so small batches do not call varwatch_alloc again and again as they grow.
const minInputCap = 16 << 10

// maxOutput bounds what the host reads back from a plugin.
const maxOutput = 256 << 20

// instance is one instantiated plugin module with its exports looked up
// once and its input buffer in guest memory.
//
// # Notes
//
// Not safe for concurrent use: wazero module instances are
// single-threaded. Each instance belongs to one chain stage and is only
// called with that chain's mutex held. After any error from filter the
// instance is unusable and must be closed (the guest may be mid-way through
// anything).
type instance struct {
	p      *plugin
	mod    api.Module
	mem    api.Memory
	alloc  api.Function
	filter api.Function
	// stack is CallWithStack's parameter/result slice, reused per call.
	stack [2]uint64
	// inPtr and inCap are the guest buffer varwatch_alloc returned; the
	// ABI lets the host reuse it for every call until it asks for a bigger
	// one.
	inPtr, inCap uint32
	stderr       *guestLog
	// dl is the reusable per-batch deadline; nil when the plugin has none.
	dl *deadlineCtx
}

// instantiate creates an instance, runs its reactor initializer
// (_initialize, when the module has one: Go's c-shared modules do, C and
// WAT ones usually do not), checks the ABI version and passes params (their
// encoded bytes) to varwatch_init. Nil params skip varwatch_init (the load
// probe); such an instance must not run batches.
func (p *plugin) instantiate(ctx context.Context, params []byte) (*instance, error) {
	if d := p.deadline; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(d, minInitTimeout))
		defer cancel()
	}
	in := &instance{p: p, stderr: newGuestLog(p.log)}
	mc := wazero.NewModuleConfig().
		WithName(""). // anonymous: one compiled module, many instances
		WithStartFunctions("_initialize").
		WithStdout(in.stderr).
		WithStderr(in.stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	mod, err := p.rt.InstantiateModule(ctx, p.compiled, mc)
	if err != nil {
		return nil, in.describe(fmt.Errorf("instantiate: %w", err))
	}
	in.mod = mod
	in.mem = mod.ExportedMemory(exportMemory)
	in.alloc = mod.ExportedFunction(exportAlloc)
	in.filter = mod.ExportedFunction(exportFilter)

	in.stack[0] = 0
	if err := mod.ExportedFunction(exportVersion).CallWithStack(ctx, in.stack[:]); err != nil {
		return nil, in.fail(ctx, fmt.Errorf("%s: %w", exportVersion, err))
	}
	if v := uint32(in.stack[0]); v != abi.Version {
		return nil, in.fail(ctx, fmt.Errorf("plugin speaks ABI version %d, host speaks %d", v, abi.Version))
	}

	if params == nil {
		return in, nil
	}
	if !p.hasInit {
		if len(params) > 4 { // more than an empty list
			return nil, in.fail(ctx, &paramsRefused{"this plugin takes no params (it has no " + exportInit + ")"})
		}
		return in, nil
	}
	ptr, err := in.write(ctx, params)
	if err != nil {
		return nil, in.fail(ctx, err)
	}
	in.stack[0], in.stack[1] = uint64(ptr), uint64(len(params))
	if err := mod.ExportedFunction(exportInit).CallWithStack(ctx, in.stack[:]); err != nil {
		return nil, in.fail(ctx, fmt.Errorf("%s: %w", exportInit, err))
	}
	if rc := uint32(in.stack[0]); rc != 0 {
		msg := in.lastError(ctx)
		if msg == "" {
			msg = fmt.Sprintf("%s returned %d", exportInit, rc)
		}
		return nil, in.fail(ctx, &paramsRefused{msg})
	}
	return in, nil
}

// write copies b into the guest's input buffer, growing it through
// varwatch_alloc when b does not fit, and returns its address.
func (in *instance) write(ctx context.Context, b []byte) (uint32, error) {
	if uint32(len(b)) > in.inCap || in.inCap == 0 {
		want := max(uint32(len(b)), 2*in.inCap, minInputCap)
		in.stack[0] = uint64(want)
		if err := in.alloc.CallWithStack(ctx, in.stack[:]); err != nil {
			return 0, fmt.Errorf("%s(%d): %w", exportAlloc, want, err)
		}
		ptr := uint32(in.stack[0])
		if ptr == 0 || uint64(ptr)+uint64(want) > uint64(in.mem.Size()) {
			return 0, &fault{FaultMalformed, fmt.Errorf("%s(%d) returned %#x, outside memory of %d bytes", exportAlloc, want, ptr, in.mem.Size())}
		}
		in.inPtr, in.inCap = ptr, want
	}
	if !in.mem.Write(in.inPtr, b) {
		return 0, &fault{FaultMalformed, errors.New("input buffer outside memory")}
	}
	return in.inPtr, nil
}

// run passes one encoded batch to varwatch_filter and returns the guest's
// output bytes. The result aliases guest memory: it is valid until the next
// call into the instance. Any error leaves the instance unusable.
func (in *instance) run(ctx context.Context, batch []byte) ([]byte, error) {
	if d := in.p.deadline; d > 0 {
		if in.dl == nil || !in.dl.arm(ctx) {
			if in.dl != nil {
				in.dl.release()
			}
			in.dl = newDeadlineCtx(d)
			in.dl.arm(ctx)
		}
		ctx = in.dl
		defer func() {
			if !in.dl.disarm() {
				in.dl.release()
				in.dl = nil // spent; the next batch gets a new one
			}
		}()
	}
	ptr, err := in.write(ctx, batch)
	if err != nil {
		return nil, err
	}
	in.stack[0], in.stack[1] = uint64(ptr), uint64(len(batch))
	if err := in.filter.CallWithStack(ctx, in.stack[:]); err != nil {
		return nil, err
	}
	outPtr, outLen := uint32(in.stack[0]>>32), uint32(in.stack[0])
	if outLen == 0 {
		msg := in.lastError(ctx)
		if msg == "" {
			msg = "no output"
		}
		return nil, &fault{FaultMalformed, fmt.Errorf("%s failed: %s", exportFilter, msg)}
	}
	if outLen > maxOutput {
		return nil, &fault{FaultMalformed, fmt.Errorf("output of %d bytes is over the %d byte limit", outLen, maxOutput)}
	}
	out, ok := in.mem.Read(outPtr, outLen)
	if !ok {
		return nil, &fault{FaultMalformed, fmt.Errorf("output %#x+%d is outside memory of %d bytes", outPtr, outLen, in.mem.Size())}
	}
	return out, nil
}

// lastError asks the guest for its error message, if it exports one; any
// failure to get it just means no message.
func (in *instance) lastError(ctx context.Context) string {
	if !in.p.hasError {
		return ""
	}
	in.stack[0] = 0
	if err := in.mod.ExportedFunction(exportLastError).CallWithStack(ctx, in.stack[:]); err != nil {
		return ""
	}
	b, ok := in.mem.Read(uint32(in.stack[0]>>32), min(uint32(in.stack[0]), 4096))
	if !ok {
		return ""
	}
	return string(b)
}

// fail closes the instance and returns err with what the guest printed.
func (in *instance) fail(ctx context.Context, err error) error {
	in.close(ctx)
	return in.describe(err)
}

// describe adds what the guest printed to err (a Go plugin's panic message
// is there), keeping err's chain for errors.As.
func (in *instance) describe(err error) error {
	if out := in.stderr.summary(); out != "" {
		return fmt.Errorf("%w (guest output: %s)", err, out)
	}
	return err
}

func (in *instance) close(ctx context.Context) {
	if in.dl != nil {
		in.dl.release()
	}
	if in.mod != nil {
		_ = in.mod.Close(ctx)
	}
}

// memoryPages returns the instance's current memory size in pages.
func (in *instance) memoryPages() uint32 { return in.mem.Size() / 65536 }
