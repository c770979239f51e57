package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/report"
)

func matrixCmd(ctx context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("matrix", "matrix [flags]", `  oncecheck matrix
  oncecheck matrix --model accounts --runs 1000
  oncecheck matrix --format markdown > matrix.md
  oncecheck matrix --format json --expect expected/matrix.json
  oncecheck matrix --shard 2/4 --format json > shard-2.json   # then: oncecheck merge shard-*.json
`, stdout)
	var (
		modelName  = fs.String("model", "", "model to test (default: every model)")
		backend    = fs.String("backend", "mem", "store backend: mem, or pg (PostgreSQL)")
		pgDSN      = fs.String("pg", "", "PostgreSQL DSN for --backend pg (default: $ONCECHECK_PG)")
		runs       = fs.Int("runs", 200, "runs per cell")
		cacheName  = fs.String("cache", "mem", "backend of the handlers' cache (Env.Cache): mem, or redis ($ONCECHECK_REDIS, else 127.0.0.1:6379)")
		isolation  = fs.String("isolation", "read-committed", "transaction isolation level: read-committed (PostgreSQL's default), repeatable-read or serializable")
		broker     = fs.String("broker", "queue", "broker the consumers read from: queue (per-message acks and requeues) or log (partitions, offset commits, a consumer group, as Kafka)")
		seed       = fs.Uint64("seed", 1, "seed of every cell (run i of a cell uses seed+i)")
		out        = fs.String("out", "oncecheck-results", "directory for saved counterexamples")
		format     = fs.String("format", "text", "output format: text, markdown or json")
		shrink     = fs.Bool("shrink", true, "shrink each counterexample before saving it")
		shrinkTime = fs.Duration("shrink-time", 5*time.Second, "time budget for shrinking one counterexample")
		parallel   = fs.Int("parallel", 0, "cells run at once (default: the number of CPUs)")
		expect     = fs.String("expect", "", "JSON file of expected verdicts; exit 1 when a cell disagrees (a cell that agrees is a pass in --junit)")
		record     = fs.String("record", "", "write the verdicts found as an expectation file for --expect (each violation expects its primary anomaly)")
		junit      = fs.String("junit", "", "also write a JUnit XML report (one test case per cell) to this file")
		shardFlag  = fs.String("shard", "", "run only shard K of N of the cells (K/N; merge the shards' --format json with 'oncecheck merge')")
		quiet      = fs.Bool("q", false, "quiet: no progress and no list of counterexamples")
	)
	rest, err := parse(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(rest) > 0 {
		return exitUsage, usagef("unexpected argument %q", rest[0])
	}
	if *format != "text" && *format != "markdown" && *format != "json" {
		return exitUsage, usagef("--format must be text, markdown or json, not %q", *format)
	}
	if *runs < 1 {
		return exitUsage, usagef("--runs must be at least 1")
	}
	sh, err := parseShard(*shardFlag)
	if err != nil {
		return exitUsage, err
	}
	if err := checkReportPath("--junit", *junit); err != nil {
		return exitUsage, err
	}
	if *pgDSN != "" {
		if err := checkDSN(*pgDSN); err != nil {
			return exitUsage, err
		}
		cat = cat.WithBackends(pgstore.Backend{DSN: *pgDSN})
	}
	models := cat.Models
	if *modelName != "" {
		m, err := cat.Model(*modelName)
		if err != nil {
			return exitUsage, asUsage(err)
		}
		models = []model.Model{m}
	}
	b, err := cat.Backend(*backend)
	if err != nil {
		return exitUsage, asUsage(err)
	}
	cache, err := resolveCache(cat, *cacheName)
	if err != nil {
		return exitUsage, err
	}
	var expected campaign.ExpectedMatrix
	if *expect != "" {
		if expected, err = campaign.LoadExpectedMatrix(*expect); err != nil {
			return exitUsage, usagef("--expect: %v", err)
		}
	}
	start := time.Now()
	var results []*campaign.Matrix
	for _, m := range models {
		progress := matrixProgress(stderr, m.Name())
		if *quiet {
			progress = nil
		}
		mx, err := campaign.RunMatrix(ctx, campaign.MatrixOptions{
			Model: m, Backend: b, Cache: cache, Strategies: cat.Strategies, Runs: *runs, Seed: *seed, Out: *out,
			Shrink: *shrink, ShrinkTime: *shrinkTime, Parallel: *parallel, Progress: progress,
			Shard: sh.k, Shards: sh.n, Isolation: adapters.Isolation(*isolation), Broker: *broker,
		})
		if uerr := asUsage(err); uerr != nil {
			return exitUsage, uerr
		}
		if err != nil {
			if *format == "json" {
				_ = json.NewEncoder(stdout).Encode(map[string]any{"models": results, "verdict": histories.Inconclusive, "reason": err.Error()})
			} else {
				fmt.Fprintf(stdout, "INCONCLUSIVE: %v\n", err)
			}
			return exitInconclusive, nil
		}
		results = append(results, mx)
		if ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		// Cells never started are shown as such.
		for _, mx := range results {
			markUnrun(mx)
		}
	}
	if *record != "" && ctx.Err() == nil {
		b, err := campaign.Expect(results...).Encode(results...)
		if err == nil {
			err = os.WriteFile(*record, b, 0o644)
		}
		if err != nil {
			return exitInconclusive, fmt.Errorf("--record: %w", err)
		}
	}
	o := matrixOutput{format: *format, junit: *junit, expectPath: *expect, expected: expected, quiet: *quiet,
		elapsed: time.Since(start), builtin: sameStrategies(cat.Strategies, catalogue.Builtin().Strategies)}
	code, err := o.write(stdout, stderr, results)
	if err != nil {
		return code, err
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "interrupted (%v): the table shows the cells finished so far; 'not run' cells were never started, 'stopped N' ones stopped after N runs\n", context.Cause(ctx))
		return exitInterrupted, nil
	}
	return code, nil
}

// sameStrategies reports whether a catalogue's strategies are the built-in
// ones, whose failing cells are expected.
func sameStrategies(a, b []adapters.Strategy) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			return false
		}
	}
	return true
}

// markUnrun adds the cells of an interrupted matrix that never started,
// marked as stopped after 0 runs ("not run"). A sharded matrix's cells of
// other shards stay out.
func markUnrun(mx *campaign.Matrix) {
	if mx.Shard != "" {
		return
	}
	var cells []campaign.Cell
	for _, s := range mx.Strategies {
		for _, col := range mx.Columns {
			c, ok := mx.Cell(s, col)
			if !ok {
				c = campaign.Cell{Strategy: s, Fault: col, Verdict: histories.Pass, Anomalies: []histories.Anomaly{}, Stopped: true}
			}
			cells = append(cells, c)
		}
	}
	mx.Cells = cells
}

// matrixOutput writes matrices (run, or merged from shards) in a format,
// with their JUnit report and their comparison with an expectation.
type matrixOutput struct {
	format     string
	junit      string
	expectPath string
	expected   campaign.ExpectedMatrix
	quiet      bool
	elapsed    time.Duration
	builtin    bool // the strategies are the built-in ones
}

func (o matrixOutput) write(stdout, stderr io.Writer, results []*campaign.Matrix) (int, error) {
	switch o.format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"models": results}); err != nil {
			return exitInconclusive, err
		}
	case "markdown":
		for _, mx := range results {
			writeMarkdown(stdout, mx)
		}
	default:
		for _, mx := range results {
			writeText(stdout, mx, o.quiet)
		}
		if o.elapsed > 0 {
			fmt.Fprintf(stdout, "%s in %s\n", report.Plural(len(results), "model"), o.elapsed.Round(100*time.Millisecond))
		}
		if o.builtin && o.expected == nil && !o.quiet && failing(results) {
			fmt.Fprintf(stdout, "The failing cells are the built-in strategies' known failures (each package's doc says why; expected/matrix.json lists them).\n"+
				"To verify a handler of your own, see docs/writing-an-adapter.md.\n")
		}
	}
	if o.junit != "" {
		if err := writeJUnit(o.junit, "oncecheck matrix", o.junitCases(results)); err != nil {
			return exitInconclusive, err
		}
	}
	code := exitPass
	for _, mx := range results {
		for _, c := range mx.Cells {
			if c.Verdict == histories.Inconclusive {
				code = exitInconclusive
			}
		}
	}
	if o.expected != nil {
		var mismatches []string
		for _, mx := range results {
			mismatches = append(mismatches, o.expected.Compare(mx)...)
		}
		if len(mismatches) > 0 {
			fmt.Fprintf(stderr, "%d cells disagree with %s:\n", len(mismatches), o.expectPath)
			for _, m := range mismatches {
				fmt.Fprintf(stderr, "  %s\n", m)
			}
			code = exitViolation
		} else if !o.quiet {
			fmt.Fprintf(stderr, "every cell agrees with %s\n", o.expectPath)
		}
	}
	return code, nil
}

func failing(results []*campaign.Matrix) bool {
	for _, mx := range results {
		for _, c := range mx.Cells {
			if c.Verdict == histories.Violation {
				return true
			}
		}
	}
	return false
}

// junitCases are the cells as test cases: with an expectation, a cell is a
// pass when it agrees with it (an expected failure found) and a failure
// when it does not; without one, a violation is a failure.
func (o matrixOutput) junitCases(results []*campaign.Matrix) []junitCase {
	var cases []junitCase
	for _, mx := range results {
		for _, cell := range mx.Cells {
			c := junitCase{Name: cell.Strategy + "/" + cell.Fault, Classname: "oncecheck.matrix." + mx.Model, Time: (cell.MillisToFailure + cell.ShrinkMillis) / 1000}
			detail := "counterexample: " + cell.History
			if cell.SaveError != "" {
				detail = "counterexample not saved: " + cell.SaveError
			}
			if o.expected != nil && cell.NotApplicable == "" && !cell.Stopped {
				if d, ok := o.expected.Disagreement(mx.Model, cell); !ok {
					c.failed(d, detail)
				} else if cell.Verdict == histories.Violation {
					c.SystemOut = fmt.Sprintf("expected failure found: %s @%d; %s", cell.Summary(), cell.RunsToFailure, detail)
				} else {
					c.SystemOut = fmt.Sprintf("%d runs passed, as expected", cell.Runs)
				}
				cases = append(cases, c)
				continue
			}
			switch {
			case cell.NotApplicable != "":
				c.Skipped, c.SystemOut = &struct{}{}, cell.NotApplicable
			case cell.Stopped:
				c.Skipped, c.SystemOut = &struct{}{}, fmt.Sprintf("interrupted after %d runs", cell.Runs)
			case cell.Verdict == histories.Violation:
				c.failed(fmt.Sprintf("%s @%d", cell.Summary(), cell.RunsToFailure), detail)
			case cell.Verdict == histories.Inconclusive:
				c.inconclusive(cell.Reason)
			default:
				c.SystemOut = fmt.Sprintf("%d runs passed", cell.Runs)
			}
			cases = append(cases, c)
		}
	}
	return cases
}

// matrixProgress reports cells done on stderr at most once a second.
func matrixProgress(w io.Writer, modelName string) func(done, total int, c campaign.Cell) {
	last := time.Now()
	return func(done, total int, _ campaign.Cell) {
		if time.Since(last) < time.Second || done == total {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "  %s: %d/%d cells\n", modelName, done, total)
	}
}

func cellText(c campaign.Cell) string {
	switch {
	case c.NotApplicable != "":
		return "n/a"
	case c.Stopped && c.Runs == 0:
		return "not run"
	case c.Stopped:
		return fmt.Sprintf("stopped %d", c.Runs)
	case c.Verdict == histories.Pass:
		return fmt.Sprintf("pass %d", c.Runs)
	case c.Verdict == histories.Violation:
		return fmt.Sprintf("%s @%d", c.Summary(), c.RunsToFailure)
	}
	return "inconclusive"
}

func writeText(w io.Writer, mx *campaign.Matrix, quiet bool) {
	shard := ""
	if mx.Shard != "" {
		shard = ", shard " + mx.Shard + " ('-': another shard's cell)"
	}
	fmt.Fprintf(w, "model %s: %d runs per cell, seed %d, backend %s, %s%s%s\n\n", mx.Model, mx.Runs, mx.Seed, mx.Backend, mx.Isolation, brokerNote(mx), shard)
	rows := [][]string{append([]string{"strategy"}, mx.Columns...)}
	for _, s := range mx.Strategies {
		row := []string{s}
		for _, col := range mx.Columns {
			c, ok := mx.Cell(s, col)
			if !ok {
				row = append(row, "-")
				continue
			}
			row = append(row, cellText(c))
		}
		rows = append(rows, row)
	}
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len(cell))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, cell := range row {
			fmt.Fprintf(&b, "%-*s  ", widths[i], cell)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	fmt.Fprintf(w, "\npass N: N runs passed; ANOMALY @N: found in run N; n/a: does not apply (see 'oncecheck list').\n")
	var saved []string
	for _, c := range mx.Cells {
		switch {
		case c.History != "":
			saved = append(saved, fmt.Sprintf("  %s x %s: %s", c.Strategy, c.Fault, c.History))
		case c.SaveError != "":
			saved = append(saved, fmt.Sprintf("  %s x %s: not saved: %s", c.Strategy, c.Fault, c.SaveError))
		}
	}
	if len(saved) > 0 && !quiet {
		fmt.Fprintf(w, "Counterexamples (replay with '%s replay FILE'):\n%s\n", self(), strings.Join(saved, "\n"))
	}
	fmt.Fprintln(w)
}

func writeMarkdown(w io.Writer, mx *campaign.Matrix) {
	fmt.Fprintf(w, "### %s\n\n%d runs per cell, seed %d, backend %s, %s%s.\n\n", mx.Model, mx.Runs, mx.Seed, mx.Backend, mx.Isolation, brokerNote(mx))
	fmt.Fprintf(w, "| strategy | %s |\n|---|%s\n", strings.Join(mx.Columns, " | "), strings.Repeat("---|", len(mx.Columns)))
	for _, s := range mx.Strategies {
		cells := make([]string, 0, len(mx.Columns))
		for _, col := range mx.Columns {
			c, ok := mx.Cell(s, col)
			switch {
			case !ok:
				cells = append(cells, "-")
			case c.History != "":
				cells = append(cells, fmt.Sprintf("[%s](%s)", cellText(c), c.History))
			default:
				cells = append(cells, cellText(c))
			}
		}
		fmt.Fprintf(w, "| %s | %s |\n", s, strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
}

// brokerNote names a matrix's broker when it is not the default queue.
func brokerNote(mx *campaign.Matrix) string {
	if mx.Broker == "" {
		return ""
	}
	return ", broker " + mx.Broker
}
