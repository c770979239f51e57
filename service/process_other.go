//go:build !unix

package service

import (
	"errors"
	"os/exec"
	"syscall"
)

func setGroup(*exec.Cmd) {}

func signalGroup(*exec.Cmd, syscall.Signal) error {
	return errors.New("service mode signals process groups: it needs a Unix system")
}

const supported = false

// The signals of the faults, which no signal reaches off Unix.
const (
	sigKill = syscall.Signal(9)
	sigStop = syscall.Signal(19)
	sigCont = syscall.Signal(18)
)
