package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/catalogue"
)

func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut, withDefaults(catalogue.Builtin()))
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
		{[]string{"run", "--strategy", "outbox", "--free-running", "--exhaustive"}, "need the scheduler"},
		{[]string{"run", "--strategy", "outbox", "--free-running", "--check-determinism"}, "need the scheduler"},
		{[]string{"run", "--strategy", "outbox", "--consumers", "3"}, "--consumers: sets the consumers of a free-running run only"},
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

func TestCheckSeveralFilesJSONAndShow(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := cli(t, "run", "--strategy", "dedup", "--faults", "crash", "--runs", "300", "--seed", "1", "--out", dir)
	require.Equal(t, exitViolation, code, out)
	code, _, _ = cli(t, "run", "--strategy", "outbox", "--faults", "crash", "--runs", "2", "--seed", "1", "--out", dir, "--keep-all")
	require.Equal(t, exitPass, code)
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	require.NoError(t, err)
	require.Len(t, files, 3)

	// A glob, one line per file, the worst exit code.
	code, out, _ = cli(t, "check", filepath.Join(dir, "*.jsonl"))
	require.Equal(t, exitViolation, code)
	require.Equal(t, 2, strings.Count(out, ": PASS"), out)
	require.Equal(t, 1, strings.Count(out, ": VIOLATION: lost"), out)
	require.Contains(t, out, "3 histories checked")

	// An unreadable file among them is the worst.
	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte("{\n"), 0o644))
	code, _, stderr := cli(t, "check", filepath.Join(dir, "*.jsonl"))
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "bad.jsonl:1: header:")

	// A file is streamed, and what is wrong deep in it is named by its line.
	good, err := os.ReadFile(files[0])
	require.NoError(t, err)
	lines := strings.SplitAfter(strings.TrimSpace(string(good)), "\n")
	last := len(lines) - 1 // an observation
	require.Contains(t, lines[last], `"kind":"observe"`)
	for what, want := range map[string]string{
		`"kind":"teleport"`: `unknown event kind "teleport"`,
		`"kind":"ack"`:      "ack event: an ack needs the attempt it belongs to",
	} {
		broken := filepath.Join(t.TempDir(), "broken.jsonl")
		text := strings.Join(lines[:last], "") + strings.Replace(lines[last], `"kind":"observe"`, what, 1)
		require.NoError(t, os.WriteFile(broken, []byte(text), 0o644))
		code, _, stderr = cli(t, "check", broken)
		require.Equal(t, exitUsage, code, stderr)
		require.Contains(t, stderr, fmt.Sprintf("broken.jsonl:%d: %s", last+1, want))
	}

	// --json: one object per file.
	code, out, _ = cli(t, "check", "--json", files[0], files[1], files[2], bad)
	require.Equal(t, exitUsage, code)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4)
	var verdicts []string
	for _, l := range lines {
		var v verdictJSON
		require.NoError(t, json.Unmarshal([]byte(l), &v), l)
		verdicts = append(verdicts, v.Verdict)
	}
	require.ElementsMatch(t, []string{"pass", "pass", "violation", "unreadable"}, verdicts)

	var failing string
	for _, f := range files {
		if strings.Contains(f, "lost") {
			failing = f
		}
	}
	// -v explains a violation from the whole history, evidence included.
	code, out, _ = cli(t, "check", "-v", failing)
	require.Equal(t, exitViolation, code)
	require.Contains(t, out, "What went wrong:")
	require.Contains(t, out, "evidence: attempt #")
	require.Contains(t, out, "Workload (")

	code, out, _ = cli(t, "replay", "--json", failing)
	require.Equal(t, exitViolation, code)
	var rv verdictJSON
	require.NoError(t, json.Unmarshal([]byte(out), &rv))
	require.True(t, *rv.Identical)
	require.Equal(t, "dedup", rv.Strategy)

	code, out, _ = cli(t, "show", failing)
	require.Equal(t, exitViolation, code)
	require.Contains(t, out, "strategy dedup, model orders")
	require.Contains(t, out, "Timeline (one lane per process")
	require.Contains(t, out, "| consumer-1 ")
	require.Contains(t, out, "!! #1 CRASH at after-commit")

	page := filepath.Join(dir, "report.html")
	code, out, _ = cli(t, "show", "--html", page, failing)
	require.Equal(t, exitViolation, code)
	require.Contains(t, out, "report written to "+page)
	html, err := os.ReadFile(page)
	require.NoError(t, err)
	require.Contains(t, string(html), "VIOLATION: lost")

	code, out, _ = cli(t, "show", "--json", failing)
	require.Equal(t, exitViolation, code)
	var shown struct {
		Header map[string]any    `json:"header"`
		Events []json.RawMessage `json:"events"`
		Check  verdictJSON       `json:"check"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &shown))
	require.Equal(t, "dedup", shown.Header["strategy"])
	require.NotEmpty(t, shown.Events)
	require.Equal(t, "violation", shown.Check.Verdict)
}

func TestList(t *testing.T) {
	code, out, _ := cli(t, "list")
	require.Equal(t, exitPass, code)
	for _, want := range []string{"reservation", "profiles", "publish-failure", "mem ", "state-based with accounts"} {
		require.Contains(t, out, want)
	}
}

func TestMatrixJSONAndExpect(t *testing.T) {
	dir := t.TempDir()
	code, out, stderr := cli(t, "matrix", "--model", "orders", "--runs", "50", "--format", "json", "--out", dir, "--expect", "../expected/matrix.json", "--shrink=false")
	// 50 runs may miss a rare unsafe cell: the comparison may disagree,
	// but the output must be complete and well formed.
	require.Contains(t, []int{exitPass, exitViolation}, code, stderr)
	var doc struct {
		Models []struct {
			Model string `json:"model"`
			Cells []struct {
				Strategy      string   `json:"strategy"`
				Fault         string   `json:"fault"`
				Verdict       string   `json:"verdict"`
				Anomalies     []string `json:"anomalies"`
				Runs          int      `json:"runs"`
				RunsToFailure int      `json:"runs_to_failure"`
				History       string   `json:"history"`
			} `json:"cells"`
		} `json:"models"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	require.Len(t, doc.Models, 1)
	require.Len(t, doc.Models[0].Cells, 17*8)
	for _, c := range doc.Models[0].Cells {
		require.NotNil(t, c.Anomalies)
		if c.Verdict == "violation" {
			require.FileExists(t, c.History)
			require.Positive(t, c.RunsToFailure)
		}
	}
	if code == exitPass {
		require.Contains(t, stderr, "every cell agrees")
	}

	code, out, _ = cli(t, "matrix", "--model", "accounts", "--runs", "20", "--format", "markdown", "--out", dir, "--shrink=false")
	require.Equal(t, exitPass, code)
	require.Contains(t, out, "| strategy | crash | redelivery |")
	require.Contains(t, out, "| state-based | n/a |")
}

func TestJUnitReports(t *testing.T) {
	dir := t.TempDir()
	report := filepath.Join(dir, "run.xml")
	code, _, _ := cli(t, "run", "--strategy", "dedup", "--faults", "crash", "--runs", "200", "--seed", "1", "--out", dir, "--junit", report)
	require.Equal(t, exitViolation, code)
	b, err := os.ReadFile(report)
	require.NoError(t, err)
	require.Contains(t, string(b), `<testsuite name="oncecheck run" tests="1" failures="1"`)
	require.Contains(t, string(b), `message="dedup is not exactly-once: lost`)

	report = filepath.Join(dir, "matrix.xml")
	code, _, _ = cli(t, "matrix", "--model", "accounts", "--runs", "20", "--shrink=false", "--out", dir, "--junit", report)
	require.Equal(t, exitPass, code)
	b, err = os.ReadFile(report)
	require.NoError(t, err)
	require.Contains(t, string(b), `tests="136"`)
	require.Contains(t, string(b), `skipped="8"`, "state-based does not apply to accounts")
	require.Contains(t, string(b), `<testcase name="reservation/crash" classname="oncecheck.matrix.accounts"`)
}

func TestCompletion(t *testing.T) {
	code, out, _ := cli(t, "completion", "bash")
	require.Equal(t, exitPass, code)
	require.Contains(t, out, "complete -F _oncecheck oncecheck")
	require.Contains(t, out, "reservation")
	script := filepath.Join(t.TempDir(), "c.bash")
	require.NoError(t, os.WriteFile(script, []byte(out), 0o644))
	// bash parses it and completes a strategy name.
	check := exec.Command("bash", "-c", `source `+script+`; COMP_WORDS=(oncecheck run --strategy res); COMP_CWORD=3; _oncecheck; echo "${COMPREPLY[@]}"`)
	got, err := check.CombinedOutput()
	require.NoError(t, err, string(got))
	require.Equal(t, "reservation\n", string(got))
	for _, shell := range []string{"zsh", "fish"} {
		code, out, _ = cli(t, "completion", shell)
		require.Equal(t, exitPass, code)
		require.Contains(t, out, "oncecheck")
	}
	code, _, _ = cli(t, "completion", "tcsh")
	require.Equal(t, exitUsage, code)
}

func TestRunJSON(t *testing.T) {
	code, out, _ := cli(t, "run", "--strategy", "dedup", "--faults", "crash", "--runs", "200", "--seed", "1", "--out", t.TempDir(), "--json")
	require.Equal(t, exitViolation, code)
	var v struct {
		Verdict   string   `json:"verdict"`
		Anomalies []string `json:"anomalies"`
		History   string   `json:"history"`
		Injected  map[string]int
	}
	require.NoError(t, json.Unmarshal([]byte(out), &v), out)
	require.Equal(t, "violation", v.Verdict)
	require.Equal(t, []string{"lost"}, v.Anomalies)
	require.FileExists(t, v.History)
	require.NotZero(t, v.Injected["crash"])
}

// TestAnUnwritableOutIsAUsageError: --out is checked before the campaign.
func TestAnUnwritableOutIsAUsageError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	code, stdout, stderr := cli(t, "run", "--strategy", "naive", "--runs", "5", "--out", file)
	require.Equal(t, exitUsage, code, "stdout: %s", stdout)
	require.Contains(t, stderr, "--out: cannot save histories there")
	code, _, stderr = cli(t, "matrix", "--runs", "1", "--model", "orders", "--out", file)
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "--out: cannot save histories there")
}

// TestCheckOutputOrder: --output-order takes checked or ignored, and a
// pass whose outputs are in order stays a pass either way.
func TestCheckOutputOrder(t *testing.T) {
	pass := "../histories/testdata/corpus/outbox-orders-crash+redelivery-pass-mem-11.jsonl"
	for _, order := range []string{"checked", "ignored"} {
		code, out, stderr := cli(t, "check", "--output-order", order, pass)
		require.Zero(t, code, "%s: %s%s", order, out, stderr)
		require.Contains(t, out, "PASS")
	}
	code, _, stderr := cli(t, "check", "--output-order", "sometimes", pass)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "--output-order")
}
