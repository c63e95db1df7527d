//go:build !linux

package kubetest

import "syscall"

// sysProcAttr: elsewhere than on Linux, a control plane outlives a test process that
// is killed before its cleanups run.
func sysProcAttr() *syscall.SysProcAttr { return nil }
