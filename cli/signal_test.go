package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// startToolIn starts the built tool with stdin and extra environment.
func startToolIn(t *testing.T, bin string, stdin io.Reader, env []string, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr syncBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	cmd.Env = append(os.Environ(), env...)
	require.NoError(t, cmd.Start())
	return cmd, &stdout, &stderr
}

// TestSignalsStopEveryCommand sends SIGINT and SIGTERM to every command
// while it works or waits for its input: each stops with 130 or 143 and a
// summary, and leaves no temporary file.
func TestSignalsStopEveryCommand(t *testing.T) {
	bin := buildTool(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		want := map[syscall.Signal]int{syscall.SIGINT: 130, syscall.SIGTERM: 143}[sig]
		name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sig]
		t.Run(name, func(t *testing.T) {
			tmp := t.TempDir()
			env := []string{"TMPDIR=" + tmp}
			fifo := filepath.Join(t.TempDir(), "fifo")
			require.NoError(t, syscall.Mkfifo(fifo, 0o600))
			out := filepath.Join(t.TempDir(), "results")
			for _, c := range []struct {
				args    []string
				wait    time.Duration
				summary string
			}{
				{[]string{"check", fifo}, 300 * time.Millisecond, "interrupted by " + name + " while checking"},
				{[]string{"show", "-"}, 300 * time.Millisecond, "interrupted by " + name + " before - was done"},
				{[]string{"replay", "-"}, 300 * time.Millisecond, "interrupted by " + name + " before - was done"},
				{[]string{"run", "--strategy", "outbox", "--faults", "crash", "--runs", "100000000", "--seed", "1", "--out", out}, time.Second, "interrupted after"},
				{[]string{"matrix", "--runs", "100000", "--parallel", "2", "--out", out}, 2 * time.Second, "interrupted by " + name},
			} {
				stdin, w, err := os.Pipe() // not written: the command waits for its input
				require.NoError(t, err)
				cmd, stdout, stderr := startToolIn(t, bin, stdin, env, c.args...)
				_ = stdin.Close()
				time.Sleep(c.wait)
				require.NoError(t, cmd.Process.Signal(sig))
				require.Equal(t, want, waitExit(t, cmd, stdout), "%v: stderr: %s", c.args, stderr.String())
				require.Contains(t, stdout.String()+stderr.String(), c.summary, c.args)
				_ = w.Close()
				entries, err := os.ReadDir(tmp)
				require.NoError(t, err)
				require.Empty(t, entries, "%v: no temporary file left", c.args)
				if c.args[0] == "matrix" {
					require.Contains(t, stdout.String(), "not run", "the cells never started are marked")
				}
			}
			entries, _ := os.ReadDir(out)
			for _, e := range entries {
				require.False(t, strings.HasPrefix(e.Name(), ".tmp-"), "temporary file left: %s", e.Name())
			}
		})
	}
}

// TestCheckReadsStandardInputPipesAndFIFOs: "-", /dev/stdin from a pipe,
// and a FIFO give the file's own verdict.
func TestCheckReadsStandardInputPipesAndFIFOs(t *testing.T) {
	bin := buildTool(t)
	dir := t.TempDir()
	code, out, _ := cli(t, "run", "--strategy", "dedup", "--faults", "crash", "--runs", "300", "--seed", "1", "--out", dir)
	require.Equal(t, exitViolation, code, out)
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	content, err := os.ReadFile(files[0])
	require.NoError(t, err)
	tmp := t.TempDir()
	for _, args := range [][]string{{"check", "-"}, {"check", "/dev/stdin"}, {"show", "-"}, {"replay", "-"}, {"check", "-v", "-"}} {
		cmd, stdout, stderr := startToolIn(t, bin, bytes.NewReader(content), []string{"TMPDIR=" + tmp}, args...)
		require.Equal(t, exitViolation, waitExit(t, cmd, stdout), "%v: %s", args, stderr.String())
		require.Contains(t, stdout.String(), "lost", args)
		entries, _ := os.ReadDir(tmp)
		require.Empty(t, entries, "the spooled input is removed")
	}
	cmd := exec.Command("sh", "-c", "cat "+files[0]+" | "+bin+" check /dev/stdin")
	got, err := cmd.Output()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "%v", err)
	require.Equal(t, exitViolation, exit.ExitCode())
	require.Contains(t, string(got), "/dev/stdin: VIOLATION: lost")

	fifo := filepath.Join(t.TempDir(), "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			_, _ = f.Write(content)
			_ = f.Close()
		}
	}()
	code, out, stderr := cli(t, "check", fifo)
	require.Equal(t, exitViolation, code, stderr)
	require.Contains(t, out, fifo+": VIOLATION: lost")
}

// TestAFullResultsDirectoryKeepsTheFinding runs the tool with its results
// directory on a full file system (a tiny tmpfs, in a mount namespace of
// its own): the directory passes the check before the campaign, the save
// fails, and the violation, its explanation and a fallback copy remain,
// with exit 1.
func TestAFullResultsDirectoryKeepsTheFinding(t *testing.T) {
	if err := exec.Command("unshare", "-m", "true").Run(); err != nil {
		t.Skipf("needs a mount namespace (unshare -m, as root): %v", err)
	}
	bin := buildTool(t)
	out := t.TempDir()
	tmp := t.TempDir()
	script := `mount -t tmpfs -o size=16k none "$1" && dd if=/dev/zero of="$1/fill" bs=1k count=64 2>/dev/null; ` +
		`TMPDIR="$2" "$3" run --strategy dedup --faults crash --runs 300 --seed 1 --out "$1"`
	cmd := exec.Command("unshare", "-m", "sh", "-c", script, "sh", out, tmp, bin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "%v: %s", err, stderr.String())
	require.Equal(t, exitViolation, exit.ExitCode(), "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
	require.Contains(t, stdout.String(), "VIOLATION after")
	require.Contains(t, stdout.String(), "What went wrong:")
	require.Contains(t, stdout.String(), "Not saved where asked:")
	require.Contains(t, stdout.String(), "no space left on device")
	fallback := regexp.MustCompile(`Saved:  (\S+)`).FindStringSubmatch(stdout.String())
	require.NotNil(t, fallback, stdout.String())
	require.True(t, strings.HasPrefix(fallback[1], tmp), fallback[1])
	h, err := histories.Load(fallback[1])
	require.NoError(t, err)
	require.Equal(t, histories.Violation, h.Header.Verdict)
}
