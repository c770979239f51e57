//go:build !linux

package service

import "time"

// activityReadable says whether this system shows what a process does:
// off Linux it does not here, and the drain waits out the fixed quiet
// period alone.
const activityReadable = false

// activity is what the kernel shows of a process tree (see the Linux
// version).
type activity struct {
	cpu     time.Duration
	threads int
	running string
}

func readActivity(int) (activity, bool) { return activity{}, false }

func unreadBy(int) string { return "" }

func peerPorts(int) map[int]bool { return nil }

func unreadHere() string { return "" }

func timerDue(int, time.Duration) string { return "" }
