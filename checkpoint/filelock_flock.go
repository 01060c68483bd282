//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package checkpoint

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on f, waiting for it: flock(2), which
// the kernel releases when the process dies, so a SIGKILL leaves no stale
// lock.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

// fileLocking reports whether lockFile locks against other processes.
const fileLocking = true
