package cli

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/histories"
)

// throwawayPostgres starts a PostgreSQL server of its own from the local
// binaries (as the postgres user when the test runs as root: the server
// refuses root), and returns its DSN and a function that restarts it.
func throwawayPostgres(t *testing.T) (dsn string, restart func()) {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	require.NotEmpty(t, matches, "no local PostgreSQL binaries (/usr/lib/postgresql/*/bin)")
	bin := filepath.Dir(matches[len(matches)-1])
	dir, err := os.MkdirTemp("", "oncecheck-pg-test-")
	require.NoError(t, err)
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, name), args...)
		if os.Getuid() == 0 {
			cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", name, out)
	}
	if os.Getuid() == 0 {
		require.NoError(t, exec.Command("chown", "postgres", dir).Run())
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	data := filepath.Join(dir, "data")
	run("initdb", "-D", data, "-A", "trust", "-U", "postgres")
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, dir)
	run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts, "-w", "start")
	t.Cleanup(func() {
		cmd := exec.Command(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop")
		if os.Getuid() == 0 {
			cmd = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop")
		}
		_ = cmd.Run()
		_ = os.RemoveAll(dir)
	})
	dsn = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return dsn, func() {
		run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts, "-m", "immediate", "-w", "restart")
	}
}

// TestPostgresRestartMidRunIsInconclusive restarts the server while a long
// run is under way: the tool stops with exit 3 and one clear line, never a
// violation or a pass, and every history it saved before stays whole.
func TestPostgresRestartMidRunIsInconclusive(t *testing.T) {
	dsn, restart := throwawayPostgres(t)
	bin := buildTool(t)
	out := filepath.Join(t.TempDir(), "results")
	cmd, stdout, stderr := startTool(t, bin, "run", "--backend", "pg", "--pg", dsn, "--strategy", "outbox", "--faults", "crash",
		"--runs", "100000000", "--seed", "1", "--keep-all", "--out", out)
	waitForFiles(t, out, 5, stderr)
	restart()
	require.Equal(t, exitInconclusive, waitExit(t, cmd, stdout), "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
	require.Regexp(t, `INCONCLUSIVE after \d+ runs \(1 undecided\): run with seed \d+: infrastructure failure: .*postgres`, stdout.String())
	require.NotContains(t, stdout.String(), "VIOLATION")
	require.NotContains(t, stderr.String(), "goroutine", "no stack trace")

	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, strings.HasPrefix(e.Name(), ".tmp-"), "temporary file left: %s", e.Name())
		h, err := histories.Load(filepath.Join(out, e.Name()))
		require.NoError(t, err, e.Name())
		require.Contains(t, []histories.Verdict{histories.Pass, histories.Inconclusive}, h.Header.Verdict, e.Name())
		code, _, _ := cli(t, "check", filepath.Join(out, e.Name()))
		require.Equal(t, map[histories.Verdict]int{histories.Pass: exitPass, histories.Inconclusive: exitInconclusive}[h.Header.Verdict], code, e.Name())
	}
}

func TestUnreachablePostgresIsInconclusive(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"run", "--backend", "pg", "--pg", "postgres://nobody@127.0.0.1:1/x?sslmode=disable&connect_timeout=2",
		"--strategy", "naive", "--runs", "5"}, &stdout, &stderr, withDefaults(catalogue.Catalogue{}))
	require.Equal(t, exitInconclusive, code)
	require.Regexp(t, `(?m)^INCONCLUSIVE: open the pg backend: backend failure: .*127\.0\.0\.1`, stdout.String())
	require.Empty(t, stderr.String())
}
