//go:build !linux

package redistest

import "syscall"

// sysProcAttr has nothing to add where Pdeathsig does not exist; the
// cleanup registered by Start stops the server on every normal exit.
func sysProcAttr() *syscall.SysProcAttr { return nil }
