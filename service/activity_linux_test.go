//go:build linux

package service

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestActivityTellsIdleFromBusy: a sleeping process uses no CPU and has
// no thread running; a busy one has a thread running or uses CPU.
func TestActivityTellsIdleFromBusy(t *testing.T) {
	idle := startHelper(t, exec.Command("sleep", "30"))
	require.Eventually(t, func() bool {
		a, ok1 := readActivity(idle.Process.Pid)
		time.Sleep(20 * time.Millisecond)
		b, ok2 := readActivity(idle.Process.Pid)
		return ok1 && ok2 && a == b && b.running == ""
	}, 10*time.Second, 10*time.Millisecond, "a sleeping process, once started, does nothing")

	busy := startHelper(t, exec.Command("sh", "-c", "while :; do :; done"))
	a, ok := readActivity(busy.Process.Pid)
	require.True(t, ok)
	time.Sleep(100 * time.Millisecond)
	b, ok := readActivity(busy.Process.Pid)
	require.True(t, ok)
	require.True(t, b.running != "" || b.cpu > a.cpu, "a busy loop runs or waits to: %+v then %+v", a, b)

	var w idleWatch
	now := time.Now()
	require.Zero(t, w.observe(now, []int{idle.Process.Pid}))
	require.Equal(t, 20*time.Millisecond, w.observe(now.Add(20*time.Millisecond), []int{idle.Process.Pid}), "idle since the first look")
	_, ok = readActivity(1 << 30)
	require.False(t, ok, "no such process")
}

// TestActivityFollowsChildren: a command's children count as its own
// (sh -c starting a program that it waits for).
func TestActivityFollowsChildren(t *testing.T) {
	cmd := startHelper(t, exec.Command("sh", "-c", "sleep 30; true"))
	require.Eventually(t, func() bool {
		a, ok := readActivity(cmd.Process.Pid)
		return ok && a.threads >= 2
	}, 10*time.Second, 10*time.Millisecond, "the shell and its sleep")
}

// TestUnreadDataIsSeen: bytes sent to a process that it does not read are
// seen in its socket; bytes it sends that oncecheck does not read, in
// oncecheck's.
func TestUnreadDataIsSeen(t *testing.T) {
	if os.Getenv("ONCECHECK_UNREAD_HELPER") != "" {
		conn, err := net.Dial("tcp", os.Getenv("ONCECHECK_UNREAD_HELPER"))
		if err != nil {
			os.Exit(2)
		}
		_, _ = conn.Write([]byte("hello"))
		time.Sleep(time.Minute) // reads nothing
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestUnreadDataIsSeen$")
	cmd.Env = append(os.Environ(), "ONCECHECK_UNREAD_HELPER="+ln.Addr().String())
	startHelper(t, cmd)
	conn, err := ln.Accept()
	require.NoError(t, err)
	defer conn.Close()
	require.Eventually(t, func() bool { return unreadHere() != "" }, 5*time.Second, 10*time.Millisecond, "the helper's hello waits in our socket")
	_, err = conn.Read(make([]byte, 5))
	require.NoError(t, err)
	require.Empty(t, unreadBy(cmd.Process.Pid), "nothing sent to the helper yet")
	_, err = conn.Write([]byte("unread"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return unreadBy(cmd.Process.Pid) != "" }, 5*time.Second, 10*time.Millisecond, "what we sent waits in the helper's socket")

	port := ln.Addr().(*net.TCPAddr).Port
	require.True(t, peerPorts(cmd.Process.Pid)[port], "the helper is connected to the listener")
	require.True(t, reconnected([]int{cmd.Process.Pid}, [][]int{{port}}))
	require.False(t, reconnected([]int{cmd.Process.Pid}, [][]int{{port + 1}}), "not to another port")
	require.True(t, reconnected([]int{cmd.Process.Pid}, nil), "no broker restart: nothing to ask")
}

func TestEnvPorts(t *testing.T) {
	require.Equal(t, []int{4222, 9092, 9093}, envPorts([]string{"NATS_URL=nats://127.0.0.1:4222", "KAFKA_BROKERS=127.0.0.1:9092,127.0.0.1:9093", "AMQP_QUEUE=q"}))
	require.Empty(t, envPorts([]string{"X=no address"}))
}

// startHelper starts a command in a process group of its own and kills
// the group at the end of the test.
func startHelper(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	setGroup(cmd)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = signalGroup(cmd, sigKill)
		_ = cmd.Wait()
	})
	return cmd
}
