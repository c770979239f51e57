//go:build linux

package service

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// activityReadable says whether this system shows what a process does
// (Linux's /proc: each thread's state and CPU time): where it does not,
// the drain waits out the fixed quiet period alone.
const activityReadable = true

// activity is what the kernel shows of a process tree (a consumer's
// command and whatever it started) at one moment.
type activity struct {
	// cpu is the CPU time its threads have used so far; threads counts
	// them (a thread that ends or starts changes the sum).
	cpu     time.Duration
	threads int
	// running names a thread on a CPU or waiting for one, or in an
	// uninterruptible sleep (disk): the process is doing something.
	running string
}

// readActivity reads the activity of the process tree rooted at pid: the
// process, its children, theirs. ok is false when /proc does not show
// it (then nothing can be said and the caller falls back).
func readActivity(pid int) (a activity, ok bool) {
	ok = true
	walkTree(pid, func(p int, tasks []os.DirEntry) {
		for _, t := range tasks {
			td := "/proc/" + strconv.Itoa(p) + "/task/" + t.Name() + "/"
			state, found := taskState(td + "stat")
			if !found {
				continue // a thread that just ended
			}
			a.threads++
			if (state == 'R' || state == 'D') && a.running == "" {
				a.running = fmt.Sprintf("thread %s of pid %d is %s", t.Name(), p, map[byte]string{'R': "running", 'D': "in a disk wait"}[state])
			}
			ns, found := taskCPU(td + "schedstat")
			if !found && p == pid {
				ok = false // no schedstat on this kernel
			}
			a.cpu += time.Duration(ns)
		}
	})
	return a, ok && a.threads > 0
}

// walkTree calls f with each process of the tree rooted at pid and its
// threads (its /proc/PID/task entries), parents first.
func walkTree(pid int, f func(pid int, tasks []os.DirEntry)) {
	seen := map[int]bool{}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		dir := "/proc/" + strconv.Itoa(p) + "/task/"
		tasks, err := os.ReadDir(dir)
		if err != nil {
			continue // it just ended
		}
		f(p, tasks)
		for _, t := range tasks {
			b, err := os.ReadFile(dir + t.Name() + "/children")
			if err != nil {
				continue
			}
			for _, c := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(c); err == nil {
					queue = append(queue, n)
				}
			}
		}
	}
}

// taskState reads a thread's state from its stat file: the letter after
// the command's closing parenthesis.
func taskState(path string) (byte, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, false
	}
	return b[i+2], true
}

// taskCPU reads a thread's CPU time in nanoseconds from its schedstat
// file (the first of its three numbers).
func taskCPU(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	f, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte(" "))
	n, err := strconv.ParseInt(string(f), 10, 64)
	return n, err == nil
}

// peerPorts returns the ports the TCP sockets of the process tree rooted
// at pid are connected to on this machine's loopback (nil when its
// sockets cannot be looked at).
func peerPorts(pid int) map[int]bool {
	var ports map[int]bool
	eachSocket(pid, func(p, fd, dup int) bool {
		if ports == nil {
			ports = map[int]bool{}
		}
		sa, err := unix.Getpeername(dup)
		if err != nil {
			return true // not connected
		}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			if a.Addr[0] == 127 {
				ports[a.Port] = true
			}
		case *unix.SockaddrInet6:
			ports[a.Port] = true
		}
		return true
	})
	return ports
}

// eachSocket calls f with each socket of the process tree rooted at pid:
// its process, its descriptor there and a duplicate of it here
// (pidfd_getfd), closed once f returns; f returns false to stop.
func eachSocket(pid int, f func(p, fd, dup int) bool) {
	stop := false
	walkTree(pid, func(p int, _ []os.DirEntry) {
		if stop {
			return
		}
		dir := "/proc/" + strconv.Itoa(p) + "/fd/"
		fds, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		pidfd := -1
		defer func() {
			if pidfd >= 0 {
				_ = unix.Close(pidfd)
			}
		}()
		for _, e := range fds {
			l, err := os.Readlink(dir + e.Name())
			if err != nil || !strings.HasPrefix(l, "socket:") {
				continue
			}
			fd, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if pidfd < 0 {
				if pidfd, err = unix.PidfdOpen(p, 0); err != nil {
					return
				}
			}
			dup, err := unix.PidfdGetfd(pidfd, fd, 0)
			if err != nil {
				continue // closed meanwhile, or not ours to look at
			}
			more := f(p, fd, dup)
			_ = unix.Close(dup)
			if !more {
				stop = true
				return
			}
		}
	})
}

// unreadBy says where data sent to the process tree rooted at pid waits
// in one of its sockets, not read yet ("" when none does, or when its
// sockets cannot be looked at: another user's process). Each socket is
// borrowed for the question (pidfd_getfd) and asked how many bytes it
// holds (SIOCINQ).
func unreadBy(pid int) string {
	var found string
	eachSocket(pid, func(p, fd, dup int) bool {
		if n, err := unix.IoctlGetInt(dup, unix.SIOCINQ); err == nil && n > 0 {
			found = fmt.Sprintf("%d bytes wait unread in socket %d of pid %d", n, fd, p)
			return false
		}
		return true
	})
	return found
}

// unreadHere says where data waits unread in a socket of this process
// (oncecheck's proxies, its embedded broker): what a service sent that
// oncecheck has not taken in yet, so has not recorded.
func unreadHere() string {
	const dir = "/proc/self/fd/"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range fds {
		l, err := os.Readlink(dir + e.Name())
		if err != nil || !strings.HasPrefix(l, "socket:") {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The descriptor may have been closed and its number reused
		// since: the question reads, it changes nothing.
		if n, err := unix.IoctlGetInt(fd, unix.SIOCINQ); err == nil && n > 0 {
			return fmt.Sprintf("%d bytes wait unread in oncecheck's socket %d", n, fd)
		}
	}
	return ""
}
