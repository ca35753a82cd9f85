//go:build linux

package journal_test

import (
	"flag"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var diskDir = flag.String("disk.dir", "", "directory BenchmarkDiskSync writes in (default: a temporary one); use the data directory's disk")

// What a commit costs the disk itself, without the engine: write a
// commit's bytes after the previous one in a 64 MiB segment, then sync,
// as raft-wal does. The durable engine's throughput follows from it
// (README, "Durability"): each write waits for about one and a half of
// these. Sub-benchmarks compare the choices a log has:
//
//   - fsync or fdatasync;
//   - a segment preallocated with fallocate, as raft-wal does (its blocks
//     are unwritten extents: a sync after writing into a fresh one also
//     commits its conversion to written), or zero-filled first (every
//     block already written: a sync writes data only);
//   - commits of 512 bytes (a few sets: eight commits share a block) or
//     4 KiB (a big batch: every commit starts a block).
//
// Reports the latency of a write and its sync (ns/op) and the CPU time it
// took (cpu-µs/op; on a virtual machine that is mostly the guest kernel's
// I/O path).
//
//	go test ./journal -run '^$' -bench DiskSync -benchtime 2000x
func BenchmarkDiskSync(b *testing.B) {
	for _, sync := range []string{"fsync", "fdatasync"} {
		for _, prep := range []string{"fallocate", "zero-filled"} {
			for _, size := range []int{512, 4096} {
				b.Run(sync+"/"+prep+"/"+strconv.Itoa(size), func(b *testing.B) {
					diskSync(b, sync == "fdatasync", prep == "zero-filled", size)
				})
			}
		}
	}
}

func diskSync(b *testing.B, datasync, zeroFill bool, size int) {
	const segment = 64 << 20
	dir := *diskDir
	if dir == "" {
		dir = b.TempDir()
	}
	f, err := os.CreateTemp(dir, "disksync-*.wal")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if zeroFill {
		zeros := make([]byte, 1<<20)
		for off := int64(0); off < segment; off += int64(len(zeros)) {
			if _, err := f.WriteAt(zeros, off); err != nil {
				b.Fatal(err)
			}
		}
	} else if err := syscall.Fallocate(int(f.Fd()), 0, 0, segment); err != nil {
		b.Skipf("fallocate: %v", err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	commit := make([]byte, size)
	for i := range commit {
		commit[i] = byte(i)
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		off := int64(i*size) % (segment - int64(size))
		if _, err := f.WriteAt(commit, off); err != nil {
			b.Fatal(err)
		}
		if datasync {
			err = syscall.Fdatasync(int(f.Fd()))
		} else {
			err = f.Sync()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
