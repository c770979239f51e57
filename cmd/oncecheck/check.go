package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
)

func checkCmd(_ context.Context, args []string, stdout, _ io.Writer) (int, error) {
	fs := newFlagSet("check", "check [flags] FILE", `  oncecheck check oncecheck-results/naive-orders-duplicate-42.jsonl
  oncecheck check --downstream none oncecheck-results/outbox-orders-pass-7.jsonl
`, stdout)
	downstream := fs.String("downstream", "", "output-copy policy: dedup-by-id or none (default: the history's own)")
	verbose := fs.Bool("v", false, "print the explanation and timeline of a failing history")
	timeout := fs.Duration("timeout", 30*time.Second, "time budget for the check; expiry is inconclusive")
	files, err := parse(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(files) != 1 {
		return exitUsage, usagef("want exactly one history file, got %d", len(files))
	}
	var policy checkers.Downstream
	if *downstream != "" {
		if policy, err = checkers.ParseDownstream(*downstream); err != nil {
			return exitUsage, usagef("--downstream: %v", err)
		}
	}
	h, err := loadHistory(files[0])
	if err != nil {
		return exitUsage, err
	}
	res, err := oncecheck.Check(h, policy, *timeout)
	if err != nil {
		return exitUsage, usagef("%s: %v", files[0], err)
	}
	return printVerdict(stdout, files[0], h, res, *verbose), nil
}

func loadHistory(path string) (*histories.History, error) {
	h, err := histories.Load(path)
	if err == nil {
		return h, nil
	}
	var se *histories.SyntaxError
	if errors.As(err, &se) {
		return nil, usagef("%v", err)
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, usagef("%s: no such file", path)
	}
	return nil, usagef("%v", err)
}

// printVerdict prints one verdict line (and the explanation when asked or
// when failing) and returns the exit code.
func printVerdict(w io.Writer, name string, h *histories.History, res checkers.Result, verbose bool) int {
	switch res.Verdict {
	case checkers.Pass:
		fmt.Fprintf(w, "%s: PASS (%s, %s)\n", name, plural(len(h.Header.Workload), "logical message"), plural(len(h.Events), "event"))
	case checkers.Inconclusive:
		fmt.Fprintf(w, "%s: INCONCLUSIVE: %s\n", name, res.Reason)
	default:
		fmt.Fprintf(w, "%s: VIOLATION: %s\n", name, anomalyList(res))
		for _, f := range res.Findings {
			fmt.Fprintf(w, "  %s: %s\n", f.Anomaly, f.Text)
		}
		if verbose {
			printExplanation(w, h, res)
		}
	}
	if h.Header.Verdict != "" && !sameOutcome(h.Header, res) {
		fmt.Fprintf(w, "note: the run that saved this history concluded %s %v\n", h.Header.Verdict, h.Header.Anomalies)
	}
	return exitCode(res.Verdict)
}

func sameOutcome(hd histories.Header, res checkers.Result) bool {
	if hd.Verdict != string(res.Verdict) || len(hd.Anomalies) != len(res.Anomalies) {
		return false
	}
	for _, a := range res.Anomalies {
		if !slices.Contains(hd.Anomalies, string(a)) {
			return false
		}
	}
	return true
}

func exitCode(v checkers.Verdict) int {
	switch v {
	case checkers.Pass:
		return exitPass
	case checkers.Violation:
		return exitViolation
	}
	return exitInconclusive
}
