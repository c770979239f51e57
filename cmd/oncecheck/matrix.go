package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

func matrixCmd(ctx context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("matrix", "matrix [flags]", `  oncecheck matrix
  oncecheck matrix --model accounts --runs 1000
  oncecheck matrix --format markdown > matrix.md
  oncecheck matrix --format json --expect expected/matrix.json
`, stdout)
	var (
		modelName  = fs.String("model", "", "model to test (default: every model)")
		backend    = fs.String("backend", "mem", "store backend: mem, or pg (PostgreSQL)")
		pgDSN      = fs.String("pg", "", "PostgreSQL DSN for --backend pg (default: $ONCECHECK_PG)")
		cacheName  = fs.String("cache", "mem", "backend of the handlers' cache (Env.Cache): mem, or redis ($ONCECHECK_REDIS, else 127.0.0.1:6379)")
		runs       = fs.Int("runs", 200, "runs per cell")
		seed       = fs.Uint64("seed", 1, "seed of every cell (run i of a cell uses seed+i)")
		out        = fs.String("out", "oncecheck-results", "directory for saved counterexamples")
		format     = fs.String("format", "text", "output format: text, markdown or json")
		shrink     = fs.Bool("shrink", true, "shrink each counterexample before saving it")
		shrinkTime = fs.Duration("shrink-time", 5*time.Second, "time budget for shrinking one counterexample")
		parallel   = fs.Int("parallel", 0, "cells run at once (default: the number of CPUs)")
		expect     = fs.String("expect", "", "JSON file of expected verdicts; exit 1 when a cell disagrees")
		junit      = fs.String("junit", "", "also write a JUnit XML report (one test case per cell) to this file")
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
	if *pgDSN != "" {
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
			return exitUsage, usagef("%v", err)
		}
	}
	start := time.Now()
	var results []*campaign.Matrix
	for _, m := range models {
		mx, err := campaign.RunMatrix(ctx, campaign.MatrixOptions{
			Model: m, Backend: b, Cache: cache, Strategies: cat.Strategies, Runs: *runs, Seed: *seed, Out: *out,
			Shrink: *shrink, ShrinkTime: *shrinkTime, Parallel: *parallel,
			Progress: matrixProgress(stderr, m.Name()),
		})
		if uerr := asUsage(err); uerr != nil {
			return exitUsage, uerr
		}
		if err != nil {
			fmt.Fprintf(stdout, "INCONCLUSIVE: %v\n", err)
			return exitInconclusive, nil
		}
		results = append(results, mx)
		if ctx.Err() != nil {
			break
		}
	}
	switch *format {
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
			writeText(stdout, mx)
		}
		fmt.Fprintf(stdout, "%d models in %s\n", len(results), time.Since(start).Round(100*time.Millisecond))
	}
	if *junit != "" {
		var cases []junitCase
		for _, mx := range results {
			for _, cell := range mx.Cells {
				c := junitCase{Name: cell.Strategy + "/" + cell.Fault, Classname: "oncecheck.matrix." + mx.Model}
				switch {
				case cell.NotApplicable != "":
					c.Skipped, c.SystemOut = &struct{}{}, cell.NotApplicable
				case cell.Verdict == histories.Violation:
					detail := "counterexample: " + cell.History
					if cell.SaveError != "" {
						detail = "counterexample not saved: " + cell.SaveError
					}
					c.failed(fmt.Sprintf("%s @%d", cell.Summary(), cell.RunsToFailure), detail)
				case cell.Verdict == histories.Inconclusive:
					c.inconclusive(cell.Reason)
				default:
					c.SystemOut = fmt.Sprintf("%d runs passed", cell.Runs)
				}
				cases = append(cases, c)
			}
		}
		if err := writeJUnit(*junit, "oncecheck matrix", cases); err != nil {
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
	if expected != nil {
		var mismatches []string
		for _, mx := range results {
			mismatches = append(mismatches, expected.Compare(mx)...)
		}
		if len(mismatches) > 0 {
			fmt.Fprintf(stderr, "%d cells disagree with %s:\n", len(mismatches), *expect)
			for _, m := range mismatches {
				fmt.Fprintf(stderr, "  %s\n", m)
			}
			code = exitViolation
		} else {
			fmt.Fprintf(stderr, "every cell agrees with %s\n", *expect)
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "interrupted: the table shows the cells finished so far")
		return exitInterrupted, nil
	}
	return code, nil
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
	case c.Verdict == histories.Pass:
		return fmt.Sprintf("pass %d", c.Runs)
	case c.Verdict == histories.Violation:
		return fmt.Sprintf("%s @%d", c.Summary(), c.RunsToFailure)
	}
	return "inconclusive"
}

func writeText(w io.Writer, mx *campaign.Matrix) {
	fmt.Fprintf(w, "model %s: %d runs per cell, seed %d, backend %s\n\n", mx.Model, mx.Runs, mx.Seed, mx.Backend)
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
	if len(saved) > 0 {
		fmt.Fprintf(w, "Counterexamples (replay with '%s replay FILE'):\n%s\n", self(), strings.Join(saved, "\n"))
	}
	fmt.Fprintln(w)
}

func writeMarkdown(w io.Writer, mx *campaign.Matrix) {
	fmt.Fprintf(w, "### %s\n\n%d runs per cell, seed %d, backend %s.\n\n", mx.Model, mx.Runs, mx.Seed, mx.Backend)
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
