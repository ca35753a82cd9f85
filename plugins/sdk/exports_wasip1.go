//go:build wasip1

package sdk

import (
	"fmt"
	"unsafe"

	"github.com/varwatch/varwatch/plugins/abi"
)

// The ABI's exports (plugins/ABI.md). Only pointer glue lives here; the
// logic is in guest.handleInit and guest.handleFilter, which tests run
// natively.

// in is the buffer varwatch_alloc hands the host. A package variable keeps
// it reachable, and Go's collector does not move objects, so its address is
// stable until the next varwatch_alloc replaces it.
var in []byte

//go:wasmexport varwatch_abi_version
func varwatchABIVersion() int32 { return abi.Version }

//go:wasmexport varwatch_alloc
func varwatchAlloc(size uint32) uint32 {
	in = make([]byte, max(size, 1))
	return addr(in)
}

//go:wasmexport varwatch_init
func varwatchInit(ptr, size uint32) int32 {
	b, err := input(ptr, size)
	if err == nil {
		err = g.handleInit(b)
	}
	if err != nil {
		g.lastErr = err.Error()
		return 1
	}
	return 0
}

//go:wasmexport varwatch_filter
func varwatchFilter(ptr, size uint32) uint64 {
	b, err := input(ptr, size)
	var out []byte
	if err == nil {
		out, err = g.handleFilter(b)
	}
	if err != nil {
		g.lastErr = err.Error()
		return 0
	}
	return pack(out)
}

//go:wasmexport varwatch_last_error
func varwatchLastError() uint64 {
	g.out = append(g.out[:0], g.lastErr...)
	return pack(g.out)
}

// input returns the host's bytes, which the ABI requires to lie in the
// buffer the last varwatch_alloc returned.
func input(ptr, size uint32) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	if len(in) == 0 || ptr != addr(in) || size > uint32(len(in)) {
		return nil, fmt.Errorf("sdk: input %#x+%d is not inside the varwatch_alloc buffer", ptr, size)
	}
	return in[:size], nil
}

func addr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

func pack(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(addr(b))<<32 | uint64(len(b))
}
