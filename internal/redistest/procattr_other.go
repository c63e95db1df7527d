//go:build !linux

package redistest

import "syscall"

// sysProcAttr: elsewhere than on Linux, a server outlives a test process that is
// killed before its cleanups run.
func sysProcAttr() *syscall.SysProcAttr { return nil }
