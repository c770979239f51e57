//go:build unix

package service

import (
	"os/exec"
	"syscall"
)

// setGroup makes the command the leader of a process group of its own, so
// that a signal reaches whatever it starts (a shell, go run, the binary).
func setGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// signalGroup sends sig to the process group of a started command.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	return syscall.Kill(-cmd.Process.Pid, sig)
}

const supported = true

// The signals of the faults.
const (
	sigKill = syscall.SIGKILL
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
)
