//go:build !(darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || windows)

package checkpoint

import "os"

// lockFile does nothing where this package has no file lock (plan9,
// js/wasm, wasip1, aix, solaris): a FileStore there serializes only its
// own process's saves, as its documentation says.
func lockFile(*os.File) error { return nil }

// fileLocking reports whether lockFile locks against other processes.
const fileLocking = false
