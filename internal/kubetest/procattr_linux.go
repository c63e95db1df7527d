package kubetest

import "syscall"

// sysProcAttr makes the kernel kill etcd and kube-apiserver when the test process
// dies, even killed by a test timeout before its cleanups ran: no control plane
// outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
