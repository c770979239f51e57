package cli

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/histories"
)

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// buildTool compiles cmd/oncecheck.
func buildTool(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "oncecheck")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/oncecheck").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// startTool starts the built tool with args, its output in buffers that
// are safe to read while it runs.
func startTool(t *testing.T, bin string, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	return cmd, &stdout, &stderr
}

// waitForFiles waits (a minute at most) until dir holds n files.
func waitForFiles(t *testing.T, dir string, n int, stderr *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		if len(entries) >= n {
			return
		}
		require.True(t, time.Now().Before(deadline), "no file saved within a minute: %s", stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits (a minute at most) for the tool to end and returns its
// exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, stdout *syncBuffer) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "exit status: %v; stdout: %s", err, stdout.String())
		return exit.ExitCode()
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("still running a minute later: %s", stdout.String())
		return 0
	}
}

// TestInterruptKeepsEverySavedCounterexample runs the real tool on a long
// matrix, sends it SIGINT once it has saved counterexamples, and checks that
// it stops within seconds with exit code 130, prints the table so far, and
// leaves only complete, loadable histories (no temporary files).
func TestInterruptKeepsEverySavedCounterexample(t *testing.T) {
	bin := buildTool(t)
	out := filepath.Join(t.TempDir(), "results")
	cmd, stdout, stderr := startTool(t, bin, "matrix", "--runs", "100000", "--out", out, "--parallel", "2")
	waitForFiles(t, out, 3, stderr)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.Equal(t, 130, waitExit(t, cmd, stdout), "stderr: %s", stderr.String())
	require.Contains(t, stderr.String(), "interrupted")
	require.Contains(t, stdout.String(), "strategy", "the table of the cells done is printed")

	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	require.NotEmpty(t, entries)
	for _, e := range entries {
		require.False(t, strings.HasPrefix(e.Name(), ".tmp-"), "temporary file left: %s", e.Name())
		h, err := histories.Load(filepath.Join(out, e.Name()))
		require.NoError(t, err, e.Name())
		require.Equal(t, histories.Violation, h.Header.Verdict)
	}
}

func TestInterruptedRunPrintsItsSummary(t *testing.T) {
	bin := buildTool(t)
	cmd, stdout, stderr := startTool(t, bin, "run", "--strategy", "outbox", "--faults", "crash", "--runs", "100000000", "--seed", "1", "--out", t.TempDir())
	time.Sleep(time.Second)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.Equal(t, 130, waitExit(t, cmd, stdout), "stderr: %s", stderr.String())
	require.Regexp(t, `interrupted after \d+ of the runs`, stdout.String())
	require.Regexp(t, `PASS: \d+ runs, no violation`, stdout.String())
}
