package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/report"
)

// verdictJSON is one file's outcome in --json output.
type verdictJSON struct {
	File      string              `json:"file"`
	Verdict   string              `json:"verdict"`
	Anomalies []histories.Anomaly `json:"anomalies"`
	Findings  []checkers.Finding  `json:"findings,omitempty"`
	Expected  []string            `json:"expected,omitempty"`
	Reason    string              `json:"reason,omitempty"`
	Error     string              `json:"error,omitempty"`
	// Replay only:
	Strategy        string `json:"strategy,omitempty"`
	Identical       *bool  `json:"identical,omitempty"`
	FirstDifference int    `json:"first_difference,omitempty"`
}

func newVerdictJSON(file string, res checkers.Result) verdictJSON {
	v := verdictJSON{File: file, Verdict: string(res.Verdict), Anomalies: res.Anomalies,
		Findings: res.Findings, Expected: res.Expected, Reason: res.Reason}
	if v.Anomalies == nil {
		v.Anomalies = []histories.Anomaly{}
	}
	return v
}

func checkCmd(ctx context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("check", "check [flags] FILE...", `  oncecheck check oncecheck-results/naive-orders-redelivery-duplicate-mem-42.jsonl
  oncecheck check 'oncecheck-results/*.jsonl'
  oncecheck check --json --downstream none oncecheck-results/*.jsonl
  cat history.jsonl | oncecheck check -
`, stdout)
	downstream := fs.String("downstream", "", "output-copy policy: dedup-by-id or none (default: each history's own)")
	verbose := fs.Bool("v", false, "print the explanation and timeline of failing histories")
	asJSON := fs.Bool("json", false, "print one JSON object per file (JSON Lines)")
	timeout := fs.Duration("timeout", 30*time.Second, "time budget per check; expiry is inconclusive")
	outputOrder := fs.String("output-order", "", "whether the order of an aggregate's outputs is part of the property: checked, or ignored (default: where the model's streams are ordered)")
	junit := fs.String("junit", "", "also write a JUnit XML report (one test case per file) to this file")
	quiet := fs.Bool("q", false, "quiet: print only the files that do not pass")
	args, err := parse(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(args) == 0 {
		return exitUsage, usagef("want at least one history file (or a glob; - for standard input)")
	}
	if err := checkReportPath("--junit", *junit); err != nil {
		return exitUsage, err
	}
	var policy checkers.Downstream
	if *downstream != "" {
		if policy, err = checkers.ParseDownstream(*downstream); err != nil {
			return exitUsage, usagef("--downstream: %v", err)
		}
	}
	order := checkers.OutputOrder(*outputOrder)
	switch order {
	case checkers.OutputOrderAsModel, checkers.OutputOrderChecked, checkers.OutputOrderIgnored:
	default:
		return exitUsage, usagef("--output-order: %q is not checked or ignored", *outputOrder)
	}
	files, err := expand(args)
	if err != nil {
		return exitUsage, err
	}
	worst := exitPass
	var cases []junitCase
	checked := 0
	for _, file := range files {
		out := stdout
		if *quiet {
			out = &quietWriter{w: stdout}
		}
		code := checkOne(ctx, out, stderr, cat, file, oncecheck.CheckOptions{Catalogue: cat, Downstream: policy, Timeout: *timeout, OutputOrder: order}, *verbose, *asJSON)
		if code == exitInterrupted {
			fmt.Fprintf(stderr, "oncecheck check: %v while checking %s; %d of %s checked\n", context.Cause(ctx), file, checked, report.Plural(len(files), "history"))
			return exitInterrupted, nil
		}
		checked++
		worst = worse(worst, code)
		c := junitCase{Name: file, Classname: "oncecheck.check"}
		switch code {
		case exitViolation:
			c.failed("violation", "oncecheck show "+file)
		case exitInconclusive:
			c.inconclusive("inconclusive")
		case exitUsage:
			c.inconclusive("unreadable history")
		}
		cases = append(cases, c)
	}
	if *junit != "" {
		if err := writeJUnit(*junit, "oncecheck check", cases); err != nil {
			return exitInconclusive, err
		}
	}
	if len(files) > 1 && !*asJSON && !*quiet {
		fmt.Fprintf(stdout, "%d histories checked\n", len(files))
	}
	return worst, nil
}

// checkOne checks one file, streamed from disk (a history of millions of
// events is not held in memory), and prints its verdict line; a file that
// cannot be read gets one line on stderr (or a JSON object with "error").
// A signal gives exitInterrupted at once.
func checkOne(ctx context.Context, stdout, stderr io.Writer, cat catalogue.Catalogue, file string, opts oncecheck.CheckOptions, verbose, asJSON bool) int {
	in, err := openInput(ctx, file)
	if errors.Is(err, errInterrupted) {
		return exitInterrupted
	}
	defer in.close()
	var f *histories.File
	var res checkers.Result
	if err == nil {
		f, err = openHistory(in)
	}
	if err == nil {
		bar := newProgress(stderr)
		res, err = interruptible(ctx, 0, func() (checkers.Result, error) {
			return oncecheck.CheckStream(f.Header, countedStream{f, bar, "events read from " + file}, opts)
		})
		bar.done()
		if errors.Is(err, errInterrupted) {
			return exitInterrupted
		}
		if err != nil {
			err = usagef("%s", in.rename(historyError(in.path, err)))
		}
	}
	if err != nil {
		if asJSON {
			_ = json.NewEncoder(stdout).Encode(verdictJSON{File: file, Verdict: "unreadable", Anomalies: []histories.Anomaly{}, Error: err.Error()})
		} else {
			fmt.Fprintf(stderr, "oncecheck check: %v\n", err)
		}
		return exitUsage
	}
	if asJSON {
		_ = json.NewEncoder(stdout).Encode(newVerdictJSON(file, res))
		return exitCode(res.Verdict)
	}
	if res.Verdict == histories.Violation && verbose {
		// The explanation and timeline need the whole history.
		h, err := loadHistory(in)
		if err != nil {
			fmt.Fprintf(stderr, "oncecheck check: %v\n", err)
			return exitUsage
		}
		return printVerdict(stdout, file, h.Header, len(h.Events), h, res, verbose)
	}
	return printVerdict(stdout, file, f.Header, f.Len(), nil, res, verbose)
}

// quietWriter drops the lines of histories that pass (check -q).
type quietWriter struct {
	w io.Writer
}

func (q *quietWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(": PASS (")) {
		return len(p), nil
	}
	return q.w.Write(p)
}

// countedStream reports the events of each pass over a history file to a
// progress: a long check (millions of events) shows it is moving.
type countedStream struct {
	*histories.File
	bar  *progress
	what string
}

func (c countedStream) Each(fn func(*histories.Event) error) error {
	n := 0
	return c.File.Each(func(ev *histories.Event) error {
		if n++; n%4096 == 0 {
			c.bar.count(n, c.what)
		}
		return fn(ev)
	})
}

// worse orders exit codes by severity: unreadable input, then a violation,
// then inconclusive, then pass.
func worse(a, b int) int {
	rank := map[int]int{exitPass: 0, exitInconclusive: 1, exitViolation: 2, exitUsage: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// expand turns the arguments into files: an argument with glob characters
// that names no file is expanded (shells leave quoted globs alone).
func expand(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		if _, err := os.Stat(a); err == nil || !strings.ContainsAny(a, "*?[") {
			files = append(files, a)
			continue
		}
		matches, err := filepath.Glob(a)
		if err != nil {
			return nil, usagef("bad pattern %q: %v", a, err)
		}
		if len(matches) == 0 {
			return nil, usagef("%s: no file matches", a)
		}
		files = append(files, matches...)
	}
	return files, nil
}

func loadHistory(in *input) (*histories.History, error) {
	h, err := histories.Load(in.path)
	if err != nil {
		return nil, usagef("%s", in.rename(historyError(in.path, err)))
	}
	return h, nil
}

func openHistory(in *input) (*histories.File, error) {
	f, err := histories.Open(in.path)
	if err != nil {
		return nil, usagef("%s", in.rename(historyError(in.path, err)))
	}
	return f, nil
}

// historyError says what is wrong with a history file: its own words for a
// syntax error (they name the file and line), the path otherwise.
func historyError(path string, err error) string {
	var se *histories.SyntaxError
	switch {
	case errors.As(err, &se) && se.File != "":
		return err.Error()
	case errors.Is(err, os.ErrNotExist):
		return path + ": no such file"
	case strings.Contains(err.Error(), path):
		return err.Error()
	}
	return path + ": " + err.Error()
}

// printVerdict prints one verdict line (and the explanation when asked or
// when failing) and returns the exit code.
// h is needed only for a verbose violation.
func printVerdict(w io.Writer, name string, hd histories.Header, events int, h *histories.History, res checkers.Result, verbose bool) int {
	switch res.Verdict {
	case histories.Pass:
		if len(hd.Workload) == 0 { // an exported history need not list its workload
			fmt.Fprintf(w, "%s: PASS (%s)\n", name, report.Plural(events, "event"))
			break
		}
		fmt.Fprintf(w, "%s: PASS (%s, %s)\n", name, report.Plural(len(hd.Workload), "logical message"), report.Plural(events, "event"))
	case histories.Inconclusive:
		fmt.Fprintf(w, "%s: INCONCLUSIVE: %s\n", name, res.Reason)
	default:
		fmt.Fprintf(w, "%s: VIOLATION: %s\n", name, report.Anomalies(res))
		for _, f := range res.Findings {
			fmt.Fprintf(w, "  %s: %s\n", f.Anomaly, f.Text)
		}
		if verbose {
			_ = report.Explanation(w, h, res)
		}
	}
	if hd.Verdict != "" && !sameOutcome(hd, res) {
		fmt.Fprintf(w, "note: the run that saved this history concluded %s %v\n", hd.Verdict, hd.Anomalies)
	}
	return exitCode(res.Verdict)
}

func sameOutcome(hd histories.Header, res checkers.Result) bool {
	if hd.Verdict != res.Verdict || len(hd.Anomalies) != len(res.Anomalies) {
		return false
	}
	for _, a := range res.Anomalies {
		if !slices.Contains(hd.Anomalies, a) {
			return false
		}
	}
	return true
}

func exitCode(v histories.Verdict) int {
	switch v {
	case histories.Pass:
		return exitPass
	case histories.Violation:
		return exitViolation
	}
	return exitInconclusive
}
