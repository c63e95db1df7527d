package redistest

import "syscall"

// sysProcAttr makes the kernel kill redis-server when the test process dies, even
// killed by a test timeout before its cleanups ran: no server outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
