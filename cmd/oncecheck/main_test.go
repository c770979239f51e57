package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestRunCheckReplayAViolation(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := cli(t, "run", "--strategy", "naive", "--faults", "redelivery", "--runs", "200", "--seed", "3", "--out", dir)
	require.Equal(t, exitViolation, code, out)
	require.Contains(t, out, "seed=3")
	require.Contains(t, out, "VIOLATION after")
	require.Contains(t, out, "duplicate: k1")
	require.Contains(t, out, "Timeline:")
	require.Contains(t, out, "!! ACK LOST")
	path := regexp.MustCompile(`Saved:  (\S+)`).FindStringSubmatch(out)
	require.Len(t, path, 2, out)
	require.FileExists(t, path[1])
	require.Contains(t, out, "replay "+path[1])

	code, out, _ = cli(t, "check", path[1])
	require.Equal(t, exitViolation, code)
	require.Contains(t, out, "VIOLATION: duplicate")
	require.NotContains(t, out, "note:", "same verdict as the run that saved it")

	code, out, _ = cli(t, "replay", path[1])
	require.Equal(t, exitViolation, code)
	require.Contains(t, out, "identical to the saved history")

	code, out, _ = cli(t, "replay", "--strategy", "outbox", path[1])
	require.Equal(t, exitPass, code, out)
	require.Contains(t, out, "PASS")
}

func TestRunPass(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := cli(t, "run", "--strategy", "outbox", "--faults", "redelivery,crash", "--runs", "300", "--out", dir)
	require.Equal(t, exitPass, code, out)
	require.Regexp(t, `PASS: 300 runs, no violation \(faults injected: crash=\d+ redelivery=\d+\)`, out)
	entries, _ := os.ReadDir(dir)
	require.Empty(t, entries, "passing runs are not saved without --keep-all")

	code, _, _ = cli(t, "run", "--strategy", "outbox", "--faults", "crash", "--runs", "3", "--out", dir, "--keep-all")
	require.Equal(t, exitPass, code)
	entries, _ = os.ReadDir(dir)
	require.Len(t, entries, 3)
}

func TestUsageErrorsAreOneLineAndExit2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte(`{"format":"oncecheck-history","version":"1.0","model":"orders","plan":{"faults":[]}}`+"\n"+`{"step":1,"kind":"teleport"}`+"\n"), 0o644))
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--strategy", "nope"}, `unknown strategy "nope"`},
		{[]string{"run"}, "--strategy is required"},
		{[]string{"run", "--strategy", "naive", "--faults", "meteor"}, `unknown fault kind "meteor"`},
		{[]string{"run", "--strategy", "naive", "--runs", "zero"}, `invalid value "zero"`},
		{[]string{"check", bad}, bad + `:2: unknown event kind "teleport"`},
		{[]string{"check", filepath.Join(dir, "missing.jsonl")}, "no such file"},
		{[]string{"replay"}, "want exactly one history file"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, _, stderr := cli(t, c.args...)
			require.Equal(t, exitUsage, code)
			require.Contains(t, stderr, c.want)
			require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		})
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := cli(t, "help")
	require.Equal(t, exitPass, code)
	require.Contains(t, out, "Exit codes")
	for _, cmd := range []string{"run", "check", "replay"} {
		code, out, _ = cli(t, cmd, "--help")
		require.Equal(t, exitPass, code)
		require.Contains(t, out, "Usage: oncecheck "+cmd)
		require.Contains(t, out, "Examples:")
	}
}
