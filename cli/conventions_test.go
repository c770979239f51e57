package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/campaign"
)

func TestVersionUsageAndUnknownFlags(t *testing.T) {
	code, out, _ := cli(t, "--version")
	require.Equal(t, exitPass, code)
	require.Regexp(t, `^oncecheck \S.* \(go1\.\d+`, out)

	code, out, stderr := cli(t)
	require.Equal(t, exitUsage, code, "no arguments is a usage error")
	require.Empty(t, out)
	require.Contains(t, stderr, "Usage: oncecheck <command>")
	require.LessOrEqual(t, strings.Count(stderr, "\n"), 2, "the short usage: %s", stderr)

	for _, cmd := range []string{"run", "matrix", "check", "show", "replay", "merge", "list"} {
		code, out, _ = cli(t, cmd, "--help")
		require.Equal(t, exitPass, code)
		require.Equal(t, 1, strings.Count(out, "Usage: oncecheck "+cmd), "the usage once: %s", out)
	}

	code, out, stderr = cli(t, "run", "--strategi", "naive")
	require.Equal(t, exitUsage, code)
	require.Empty(t, out)
	require.Equal(t, "oncecheck run: unknown flag --strategi (did you mean --strategy?) (see 'oncecheck run --help')\n", stderr)
	code, _, stderr = cli(t, "matrix", "--formt", "json")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "did you mean --format?")
	code, _, stderr = cli(t, "mtrix")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, `unknown command "mtrix" (did you mean matrix?)`)

	// Usage errors found before any work: a report path that is a
	// directory, a malformed shard.
	dir := t.TempDir()
	for _, args := range [][]string{
		{"check", "--junit", dir, "x.jsonl"},
		{"run", "--strategy", "naive", "--junit", dir},
		{"matrix", "--junit", filepath.Join(dir, "missing", "m.xml")},
		{"run", "--strategy", "naive", "--shard", "3/2", "--seed", "1"},
		{"run", "--strategy", "naive", "--shard", "1/2"},
		{"show", "--html", dir, "x.jsonl"},
	} {
		code, _, stderr := cli(t, args...)
		require.Equal(t, exitUsage, code, "%v: %s", args, stderr)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "%v: one line: %s", args, stderr)
	}
}

// TestNoPasswordInAnyOutput gives DSNs with a password, malformed and
// unreachable, as a URL and as key=value pairs: the password is nowhere in
// the output.
func TestNoPasswordInAnyOutput(t *testing.T) {
	const secret = "TOPSECRET"
	t.Setenv("ONCECHECK_PG", "postgres://envuser:"+secret+"@127.0.0.1:1/x?connect_timeout=1")
	for _, c := range []struct {
		dsn  string
		code int
	}{
		{"postgres://u:" + secret + "@[::1/x", exitUsage},
		{"postgres://u:" + secret + "@127.0.0.1:1/x?sslmode=bogus", exitUsage},
		{"postgres://u:" + secret + "@127.0.0.1:1/x?connect_timeout=1", exitInconclusive},
		{"host=127.0.0.1 port=1 user=u password=" + secret + " connect_timeout=1", exitInconclusive},
		{"", exitInconclusive}, // $ONCECHECK_PG's
	} {
		args := []string{"run", "--backend", "pg", "--strategy", "naive", "--runs", "2", "--seed", "1", "--out", t.TempDir()}
		if c.dsn != "" {
			args = append(args, "--pg", c.dsn)
		}
		for _, extra := range [][]string{nil, {"--json"}} {
			code, out, stderr := cli(t, append(args, extra...)...)
			require.Equal(t, c.code, code, "%s: %s %s", c.dsn, out, stderr)
			require.NotContains(t, out+stderr, secret, c.dsn)
			require.NotEmpty(t, out+stderr)
			if extra != nil && code != exitUsage {
				var v map[string]any
				require.NoError(t, json.Unmarshal([]byte(out), &v), "--json prints JSON on a backend failure: %s", out)
				require.Equal(t, "inconclusive", v["verdict"])
			}
		}
	}
}

// TestNoRawControlCharacterInAnyOutput crafts a history whose names hold
// terminal escape sequences: check, check -v, show and replay print them
// escaped.
func TestNoRawControlCharacterInAnyOutput(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := cli(t, "run", "--strategy", "dedup", "--faults", "crash", "--runs", "300", "--seed", "1", "--out", dir)
	require.Equal(t, exitViolation, code, out)
	path := regexp.MustCompile(`Saved:  (\S+)`).FindStringSubmatch(out)[1]
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	evil := strings.ReplaceAll(string(b), `"o1"`, `"o1\u001b]0;pwned\u0007\u001b[2J\r\u0085"`)
	require.NotEqual(t, string(b), evil)
	crafted := filepath.Join(dir, "crafted\x1b[31m.jsonl")
	require.NoError(t, os.WriteFile(crafted, []byte(evil), 0o644))
	for _, args := range [][]string{
		{"check", crafted}, {"check", "-v", crafted}, {"show", crafted}, {"replay", "-v", crafted}, {"check", "--json", crafted},
	} {
		code, out, stderr := cli(t, args...)
		require.Contains(t, []int{exitViolation, exitPass}, code, "%v: %s %s", args, out, stderr)
		for _, r := range out + stderr {
			require.False(t, (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r < 0xa0), "%v: raw control character %U in %q", args, r, out)
		}
		if args[1] == "-v" || args[0] == "show" {
			require.Contains(t, out, `o1\x1b]0;pwned\x07\x1b[2J\x0d\u0085`, args)
		}
	}
}

// TestShardsMergeIntoTheWholeCampaign splits a run and a matrix into
// shards and merges them: the result is the unsharded one, timings aside,
// and the merged JUnit with an agreeing expectation has no failure.
func TestShardsMergeIntoTheWholeCampaign(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "results")
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	runArgs := []string{"run", "--strategy", "dedup", "--faults", "crash", "--runs", "40", "--seed", "1", "--out", out, "--json"}
	code, whole, _ := cli(t, runArgs...)
	require.Equal(t, exitViolation, code, whole)
	var shards []string
	for _, sh := range []string{"1/3", "2/3", "3/3"} {
		code, o, _ := cli(t, append(runArgs, "--shard", sh)...)
		require.Contains(t, []int{exitPass, exitViolation}, code, o)
		shards = append(shards, file("run-"+strings.ReplaceAll(sh, "/", "-")+".json", o))
	}
	code, merged, stderr := cli(t, append([]string{"merge", "--format", "json"}, shards...)...)
	require.Equal(t, exitViolation, code, stderr)
	require.Equal(t, decode(t, whole), decode(t, merged))
	code, text, _ := cli(t, append([]string{"merge", "--junit", filepath.Join(dir, "run.xml")}, shards[2], shards[0], shards[1])...)
	require.Equal(t, exitViolation, code)
	require.Contains(t, text, "VIOLATION after")
	xml, err := os.ReadFile(filepath.Join(dir, "run.xml"))
	require.NoError(t, err)
	require.Contains(t, string(xml), `failures="1"`)
	require.Contains(t, string(xml), "What went wrong:")

	mxArgs := []string{"matrix", "--model", "accounts", "--runs", "15", "--shrink=false", "--out", out, "--format", "json", "-q"}
	code, wholeMx, _ := cli(t, mxArgs...)
	require.Equal(t, exitPass, code)
	shards = nil
	for _, sh := range []string{"1/2", "2/2"} {
		code, o, _ := cli(t, append(mxArgs, "--shard", sh)...)
		require.Equal(t, exitPass, code, o)
		shards = append(shards, file("matrix-"+strings.ReplaceAll(sh, "/", "-")+".json", o))
	}
	code, mergedMx, stderr := cli(t, append([]string{"merge", "--format", "json"}, shards...)...)
	require.Equal(t, exitPass, code, stderr)
	require.Equal(t, decodeMatrix(t, wholeMx), decodeMatrix(t, mergedMx))
	code, _, stderr = cli(t, "merge", shards[0])
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "missing (a shard not given?)")

	// An expectation the cells agree with: every JUnit case passes, the
	// expected failures included.
	var doc struct {
		Models []*campaign.Matrix `json:"models"`
	}
	require.NoError(t, json.Unmarshal([]byte(wholeMx), &doc))
	expect, err := json.Marshal(campaign.Expect(doc.Models...))
	require.NoError(t, err)
	expectFile := file("expect.json", string(expect))
	junit := filepath.Join(dir, "matrix.xml")
	code, _, stderr = cli(t, append([]string{"merge", "--expect", expectFile, "--junit", junit, "-q"}, shards...)...)
	require.Equal(t, exitPass, code, stderr)
	xml, err = os.ReadFile(junit)
	require.NoError(t, err)
	require.Contains(t, string(xml), `tests="136" failures="0" errors="0" skipped="8"`)
	require.Contains(t, string(xml), "expected failure found")

	// JUnit reports merge too.
	var reports []string
	for i, sh := range shards {
		r := filepath.Join(dir, "shard"+string(rune('1'+i))+".xml")
		code, _, _ := cli(t, "merge", "--junit", r, "--expect", expectFile, sh)
		require.Equal(t, exitUsage, code, "one shard is not a whole matrix")
		code, _, _ = cli(t, append(mxArgs[:len(mxArgs)-3], "--shard", []string{"1/2", "2/2"}[i], "--junit", r, "--expect", expectFile)...)
		require.Equal(t, exitPass, code)
		reports = append(reports, r)
	}
	code, all, _ := cli(t, append([]string{"merge"}, reports...)...)
	require.Equal(t, exitPass, code)
	require.Contains(t, all, `tests="136" failures="0"`)
}

func decode(t *testing.T, s string) map[string]any {
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &v), s)
	delete(v, "ms_to_failure")
	delete(v, "shrink_ms")
	return v
}

func decodeMatrix(t *testing.T, s string) []*campaign.Matrix {
	var doc struct {
		Models []*campaign.Matrix `json:"models"`
	}
	require.NoError(t, json.Unmarshal([]byte(s), &doc), s)
	for _, mx := range doc.Models {
		for i := range mx.Cells {
			mx.Cells[i].MillisToFailure, mx.Cells[i].ShrinkMillis = 0, 0
		}
	}
	return doc.Models
}

func TestExhaustiveJSON(t *testing.T) {
	code, out, _ := cli(t, "run", "--exhaustive", "--strategy", "dedup", "--faults", "crash", "--json", "--out", t.TempDir())
	require.Equal(t, exitViolation, code, out)
	var v exhaustiveJSON
	require.NoError(t, json.Unmarshal([]byte(out), &v), out)
	require.Equal(t, "violation", v.Verdict)
	require.FileExists(t, v.History)
}
