package cli

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

	require.Empty(t, schemas(t, dsn), "the run's schema is dropped once the server is back")

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

// schemas lists the schemas oncecheck's stores made on the server.
func schemas(t *testing.T, dsn string) []string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'oncecheck%'")
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// TestSignalsOnPostgresLeaveNoSchema stops run and matrix on PostgreSQL
// with SIGINT and SIGTERM: each exits 130 or 143 with its summary, and no
// schema of theirs is left on the server.
func TestSignalsOnPostgresLeaveNoSchema(t *testing.T) {
	dsn, _ := throwawayPostgres(t)
	bin := buildTool(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		want := map[syscall.Signal]int{syscall.SIGINT: 130, syscall.SIGTERM: 143}[sig]
		for _, args := range [][]string{
			{"run", "--strategy", "outbox", "--faults", "crash", "--runs", "100000000", "--seed", "1"},
			{"matrix", "--model", "orders", "--runs", "100000", "--parallel", "2"},
		} {
			out := filepath.Join(t.TempDir(), "results")
			cmd, stdout, stderr := startTool(t, bin, append(args, "--backend", "pg", "--pg", dsn, "--out", out)...)
			time.Sleep(3 * time.Second)
			require.NotEmpty(t, schemas(t, dsn), "%v: the campaign has its schema", args)
			require.NoError(t, cmd.Process.Signal(sig))
			require.Equal(t, want, waitExit(t, cmd, stdout), "%v: stderr: %s", args, stderr.String())
			require.Contains(t, stdout.String()+stderr.String(), "interrupted", args)
			require.Empty(t, schemas(t, dsn), "%v: no schema left", args)
		}
	}
}
