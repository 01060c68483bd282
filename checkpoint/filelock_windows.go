//go:build windows

package checkpoint

import (
	"os"
	"syscall"
	"unsafe"
)

var procLockFileEx = syscall.NewLazyDLL("kernel32.dll").NewProc("LockFileEx")

// lockFile takes an exclusive lock on f's first byte, waiting for it:
// LockFileEx, which Windows releases when the handle is closed or the
// process dies.
func lockFile(f *os.File) error {
	const lockfileExclusiveLock = 2
	var ol syscall.Overlapped
	r, _, err := procLockFileEx.Call(f.Fd(), lockfileExclusiveLock, 0, 1, 0, uintptr(unsafe.Pointer(&ol)))
	if r == 0 {
		return err
	}
	return nil
}

// fileLocking reports whether lockFile locks against other processes.
const fileLocking = true
