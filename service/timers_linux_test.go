//go:build linux

package service

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTimersAreSeen: a process that waits for a timer due soon (a sleep, a
// Go ticker, whose scheduler waits in epoll with the timer's timeout) is
// not settled; one that waits with no timer, or a long one, is.
func TestTimersAreSeen(t *testing.T) {
	if d := os.Getenv("ONCECHECK_TIMER_HELPER"); d != "" {
		if d == "none" {
			select {}
		}
		every, err := time.ParseDuration(d)
		if err != nil {
			os.Exit(2)
		}
		for range time.Tick(every) {
		}
		return
	}
	helper := func(every string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestTimersAreSeen$")
		cmd.Env = append(os.Environ(), "ONCECHECK_TIMER_HELPER="+every)
		return startHelper(t, cmd)
	}
	dueSoon := func(cmd *exec.Cmd) func() bool {
		return func() bool { return timerDue(cmd.Process.Pid, time.Second) != "" }
	}
	notDue := func(cmd *exec.Cmd) func() bool {
		return func() bool { return timerDue(cmd.Process.Pid, time.Second) == "" }
	}

	short := startHelper(t, exec.Command("sleep", "0.8"))
	require.Eventually(t, dueSoon(short), 5*time.Second, 5*time.Millisecond, "sleep 0.8 waits for a timer within 1s")
	long := startHelper(t, exec.Command("sleep", "30"))
	require.Eventually(t, notDue(long), 5*time.Second, 10*time.Millisecond, "sleep 30 does not")

	ticker := helper("700ms")
	require.Eventually(t, dueSoon(ticker), 5*time.Second, 10*time.Millisecond, "a Go program with a 700ms ticker")
	for range 10 { // whenever one looks, once the ticker runs
		time.Sleep(37 * time.Millisecond)
		require.Eventually(t, dueSoon(ticker), time.Second, 5*time.Millisecond)
	}
	idle := helper("none")
	require.Eventually(t, notDue(idle), 5*time.Second, 10*time.Millisecond, "a Go program with no timer (its runtime's own long waits aside)")
	slow := helper("20s")
	require.Eventually(t, notDue(slow), 5*time.Second, 10*time.Millisecond, "a Go program whose ticker is 20s away")
}
