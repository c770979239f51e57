//go:build linux

package service

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A thread that stands idle may still be waiting for a timer: a poll or
// an event loop given a timeout (Go's scheduler, Node.js's libuv, Python's
// asyncio do so for their next timer), a sleep, a timed wait on a futex.
// When it fires the process works again (an outbox relay's next pass, a
// retry after a back-off), so a process whose timer is due soon is not
// settled. The kernel shows each blocked thread's system call and its
// arguments (/proc/PID/task/TID/syscall); a timeout given by pointer is
// read from the process's memory (process_vm_readv, allowed on one's own
// children).

// timeoutArg says where a blocking system call keeps its timeout: which
// argument (from 1), whether it is a value in milliseconds (negative:
// none) rather than a pointer (NULL: none), whether a pointer holds a
// struct timeval rather than a timespec, and how to tell an absolute
// deadline (and its clock) from the arguments.
type timeoutArg struct {
	arg     int
	millis  bool
	timeval bool
	abs     func(args []uint64) (absolute bool, clock int32)
}

// The futex operations and flags of linux/futex.h that matter here.
const (
	futexWait          = 0
	futexLockPI        = 6
	futexWaitBitset    = 9
	futexWaitRequeuePI = 11
	futexPrivateFlag   = 128
	futexClockRealtime = 256
)

// relative is the abs of a call whose timeout is always relative.
func relative([]uint64) (bool, int32) { return false, 0 }

// clockNanosleepAbs: clock_nanosleep(clock, flags, req, rem) sleeps
// until req on clock with TIMER_ABSTIME.
func clockNanosleepAbs(args []uint64) (bool, int32) {
	return args[1]&unix.TIMER_ABSTIME != 0, int32(args[0])
}

// futexAbs: FUTEX_WAIT's timeout is relative; FUTEX_WAIT_BITSET's,
// FUTEX_LOCK_PI's and FUTEX_WAIT_REQUEUE_PI's absolute, on the realtime
// clock with FUTEX_CLOCK_REALTIME (FUTEX_LOCK_PI always). A futex call
// that does not wait has no timeout (waits reports false).
func futexAbs(args []uint64) (bool, int32) {
	op := args[1] &^ (futexPrivateFlag | futexClockRealtime)
	clock := int32(unix.CLOCK_MONOTONIC)
	if args[1]&futexClockRealtime != 0 || op == futexLockPI {
		clock = unix.CLOCK_REALTIME
	}
	return op != futexWait, clock
}

// futexWaits reports whether a futex call's op waits with the timeout
// in its fourth argument.
func futexWaits(op uint64) bool {
	switch op &^ (futexPrivateFlag | futexClockRealtime) {
	case futexWait, futexWaitBitset, futexLockPI, futexWaitRequeuePI:
		return true
	}
	return false
}

// futexWaitvAbs: futex_waitv(waiters, n, flags, timeout, clock) waits
// until an absolute deadline on clock.
func futexWaitvAbs(args []uint64) (bool, int32) { return true, int32(args[4]) }

// timedCalls are the blocking system calls with a timeout, by number, on
// the architectures whose numbers this file knows.
var timedCalls = map[string]map[int]timeoutArg{
	"amd64": {
		7:   {arg: 3, millis: true, abs: relative},  // poll
		23:  {arg: 5, timeval: true, abs: relative}, // select
		35:  {arg: 1, abs: relative},                // nanosleep
		128: {arg: 3, abs: relative},                // rt_sigtimedwait
		202: {arg: 4, abs: futexAbs},                // futex
		230: {arg: 3, abs: clockNanosleepAbs},       // clock_nanosleep
		232: {arg: 4, millis: true, abs: relative},  // epoll_wait
		270: {arg: 5, abs: relative},                // pselect6
		271: {arg: 3, abs: relative},                // ppoll
		281: {arg: 4, millis: true, abs: relative},  // epoll_pwait
		441: {arg: 4, abs: relative},                // epoll_pwait2
		449: {arg: 4, abs: futexWaitvAbs},           // futex_waitv
	},
	"arm64": {
		22:  {arg: 4, millis: true, abs: relative}, // epoll_pwait
		72:  {arg: 5, abs: relative},               // pselect6
		73:  {arg: 3, abs: relative},               // ppoll
		98:  {arg: 4, abs: futexAbs},               // futex
		101: {arg: 1, abs: relative},               // nanosleep
		115: {arg: 3, abs: clockNanosleepAbs},      // clock_nanosleep
		137: {arg: 3, abs: relative},               // rt_sigtimedwait
		441: {arg: 4, abs: relative},               // epoll_pwait2
		449: {arg: 4, abs: futexWaitvAbs},          // futex_waitv
	},
}

// futexCall is the futex system call's number on each architecture.
var futexCall = map[string]int{"amd64": 202, "arm64": 98}

// timerDue says which thread of the process tree rooted at pid waits for
// a timer that may fire within horizon ("" when none does). A timeout
// given relative to the call counts by its whole length (the kernel does
// not show when the call began): a relative timer longer than horizon is
// taken as not due. A thread whose system call cannot be read (another
// architecture, another user's process) counts as due: then nothing can
// be said, and the drain waits out its quiet period.
func timerDue(pid int, horizon time.Duration) string {
	calls, known := timedCalls[runtime.GOARCH]
	due := ""
	walkTree(pid, func(p int, tasks []os.DirEntry) {
		for _, t := range tasks {
			if due != "" {
				return
			}
			b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/task/" + t.Name() + "/syscall")
			if err != nil {
				if !os.IsNotExist(err) { // a thread that just ended is not
					due = fmt.Sprintf("thread %s of pid %d: its system call cannot be read (%v)", t.Name(), p, err)
				}
				continue
			}
			if !known {
				due = fmt.Sprintf("thread %s of pid %d: the system calls of %s are not known here", t.Name(), p, runtime.GOARCH)
				return
			}
			if left, ok := timeoutLeft(p, strings.Fields(string(b)), calls); ok && left <= horizon {
				due = fmt.Sprintf("thread %s of pid %d waits for a timer due within %s (system call %s)", t.Name(), p, left.Round(time.Millisecond), strings.Fields(string(b))[0])
			}
		}
	})
	return due
}

// timeoutLeft reads how long a thread's blocking system call may still
// wait (fields: /proc/.../syscall: the number, six arguments, the stack
// and program counters; "running", or -1 outside a call). ok is false
// when it waits with no timeout, or is in no timed call; an unreadable
// timeout counts as due at once.
func timeoutLeft(pid int, fields []string, calls map[int]timeoutArg) (time.Duration, bool) {
	if len(fields) < 7 {
		return 0, false // running, or not in a system call
	}
	nr, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0, false
	}
	ta, timed := calls[nr]
	if !timed {
		return 0, false
	}
	args := make([]uint64, 6)
	for i := range args {
		v, err := strconv.ParseUint(strings.TrimPrefix(fields[i+1], "0x"), 16, 64)
		if err != nil {
			return 0, true
		}
		args[i] = v
	}
	if nr == futexCall[runtime.GOARCH] && !futexWaits(args[1]) {
		return 0, false
	}
	v := args[ta.arg-1]
	if ta.millis {
		ms := int32(v)
		if ms < 0 {
			return 0, false // no timeout
		}
		return time.Duration(ms) * time.Millisecond, true
	}
	if v == 0 {
		return 0, false // NULL: no timeout
	}
	sec, frac, ok := readTime(pid, uintptr(v))
	if !ok {
		return 0, true
	}
	d := time.Duration(sec)*time.Second + time.Duration(frac)
	if ta.timeval {
		d = time.Duration(sec)*time.Second + time.Duration(frac)*time.Microsecond
	}
	absolute, clock := ta.abs(args)
	if !absolute {
		return d, true
	}
	var now unix.Timespec
	if unix.ClockGettime(clock, &now) != nil {
		return 0, true
	}
	return d - time.Duration(now.Nano()), true
}

// readTime reads a struct timespec (or timeval: the same two 64-bit
// words) at addr in process pid's memory.
func readTime(pid int, addr uintptr) (sec, frac int64, ok bool) {
	buf := make([]byte, 16)
	local := []unix.Iovec{{Base: &buf[0], Len: 16}}
	remote := []unix.RemoteIovec{{Base: addr, Len: 16}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err != nil || n != 16 {
		return 0, 0, false
	}
	return int64(binary.NativeEndian.Uint64(buf[:8])), int64(binary.NativeEndian.Uint64(buf[8:])), true
}
