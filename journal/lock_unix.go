//go:build unix

package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockDir takes an exclusive flock on dir/LOCK, held until the file is
// closed. The kernel releases it when the process exits, however it
// exits, so a crash never leaves it stale. Open takes it; a node of a
// cluster, which keeps only a snapshot in its directory, takes it too.
func LockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s is locked (%v); is another varwatch serving it?", ErrLocked, path, err)
	}
	return f, nil
}
