package main

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

// buildTool compiles the command once per test binary.
func buildTool(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "oncecheck")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// TestInterruptKeepsEverySavedCounterexample runs the real tool on a long
// matrix, sends it SIGINT once it has saved counterexamples, and checks that
// it stops within seconds with exit code 130, prints the table so far, and
// leaves only complete, loadable histories (no temporary files).
func TestInterruptKeepsEverySavedCounterexample(t *testing.T) {
	bin := buildTool(t)
	out := filepath.Join(t.TempDir(), "results")
	cmd := exec.Command(bin, "matrix", "--runs", "100000", "--out", out, "--parallel", "2")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())

	// Wait until some counterexamples are on disk.
	deadline := time.Now().Add(60 * time.Second)
	for {
		entries, _ := os.ReadDir(out)
		if len(entries) >= 3 {
			break
		}
		require.True(t, time.Now().Before(deadline), "no counterexample saved within a minute: %s", stderr.String())
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("still running a minute after SIGINT")
	}
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "exit status: %v", err)
	require.Equal(t, 130, exit.ExitCode(), "stderr: %s", stderr.String())
	require.Contains(t, stderr.String(), "interrupted")
	require.Contains(t, stdout.String(), "strategy", "the table of the cells done is printed")

	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	require.NotEmpty(t, entries)
	for _, e := range entries {
		require.False(t, strings.HasPrefix(e.Name(), ".tmp-"), "temporary file left: %s", e.Name())
		h, err := histories.Load(filepath.Join(out, e.Name()))
		require.NoError(t, err, e.Name())
		require.Equal(t, "violation", h.Header.Verdict)
	}
}

func TestInterruptedRunPrintsItsSummary(t *testing.T) {
	bin := buildTool(t)
	cmd := exec.Command(bin, "run", "--strategy", "outbox", "--faults", "crash", "--runs", "100000000", "--seed", "1", "--out", t.TempDir())
	var stdout syncBuffer
	cmd.Stdout = &stdout
	require.NoError(t, cmd.Start())
	time.Sleep(time.Second)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err := cmd.Wait()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "exit status: %v", err)
	require.Equal(t, 130, exit.ExitCode())
	require.Regexp(t, `interrupted after \d+ of the runs`, stdout.String())
	require.Regexp(t, `PASS: \d+ runs, no violation`, stdout.String())
}
