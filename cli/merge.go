package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/report"
)

// mergeCmd merges what the shards of one campaign wrote: the JSON of
// `matrix --shard K/N --format json` or of `run --shard K/N --json`, into
// the result the unsharded campaign gives (timings aside); or JUnit
// reports into one.
func mergeCmd(_ context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("merge", "merge [flags] FILE...", `  oncecheck merge shard-1.json shard-2.json                  # matrix or run shards: the whole result
  oncecheck merge --format json --junit matrix.xml --expect expected/matrix.json shard-*.json
  oncecheck merge --junit all.xml shard-1.xml shard-2.xml   # JUnit reports into one
`, stdout)
	format := fs.String("format", "text", "output format: text, markdown (matrix only) or json")
	junit := fs.String("junit", "", "also write the merged result as a JUnit XML report to this file")
	expect := fs.String("expect", "", "matrix: JSON file of expected verdicts; exit 1 when a cell disagrees")
	quiet := fs.Bool("q", false, "quiet: no list of counterexamples")
	files, err := parse(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(files) == 0 {
		return exitUsage, usagef("want the files of the shards")
	}
	if *format != "text" && *format != "markdown" && *format != "json" {
		return exitUsage, usagef("--format must be text, markdown or json, not %q", *format)
	}
	if err := checkReportPath("--junit", *junit); err != nil {
		return exitUsage, err
	}
	var expected campaign.ExpectedMatrix
	if *expect != "" {
		if expected, err = campaign.LoadExpectedMatrix(*expect); err != nil {
			return exitUsage, usagef("--expect: %v", err)
		}
	}
	var docs [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return exitUsage, usagef("%s", historyError(f, err))
		}
		docs = append(docs, bytes.TrimSpace(b))
	}
	switch {
	case allHave(docs, "<"):
		return mergeJUnit(stdout, files, docs, *junit)
	case allHave(docs, "{"):
	default:
		return exitUsage, usagef("want JSON files (matrix --format json, run --json) or JUnit XML files, not a mix")
	}
	var probe struct {
		Models   json.RawMessage `json:"models"`
		Strategy string          `json:"strategy"`
	}
	if err := json.Unmarshal(docs[0], &probe); err != nil {
		return exitUsage, usagef("%s: %v", files[0], err)
	}
	if probe.Models != nil {
		results, err := mergeMatrices(files, docs)
		if err != nil {
			return exitUsage, err
		}
		o := matrixOutput{format: *format, junit: *junit, expectPath: *expect, expected: expected, quiet: *quiet}
		return o.write(stdout, stderr, results)
	}
	if *expect != "" {
		return exitUsage, usagef("--expect applies to a matrix's shards")
	}
	v, err := mergeRuns(files, docs)
	if err != nil {
		return exitUsage, err
	}
	if *format == "json" {
		if err := encodeJSON(stdout, v); err != nil {
			return exitInconclusive, err
		}
	} else {
		printMergedRun(stdout, v)
	}
	if *junit != "" {
		explanation := ""
		if v.History != "" {
			if h, err := histories.Load(v.History); err == nil {
				if res, err := oncecheck.Check(h, oncecheck.CheckOptions{Catalogue: cat}); err == nil {
					var b strings.Builder
					_ = report.Explanation(&b, h, res) // a strings.Builder does not fail
					explanation = b.String()
				}
			}
		}
		if err := writeJUnit(*junit, "oncecheck run", []junitCase{runJUnitCase(v, "", explanation, 0)}); err != nil {
			return exitInconclusive, err
		}
	}
	return exitCode(histories.Verdict(v.Verdict)), nil
}

func allHave(docs [][]byte, prefix string) bool {
	for _, d := range docs {
		if !bytes.HasPrefix(d, []byte(prefix)) {
			return false
		}
	}
	return true
}

// mergeMatrices joins the cells of each model's shards, in the order of
// the whole matrix; every cell must come from exactly one shard.
func mergeMatrices(files []string, docs [][]byte) ([]*campaign.Matrix, error) {
	var merged []*campaign.Matrix
	byModel := map[string]*campaign.Matrix{}
	shards := map[string][]string{}
	for i, d := range docs {
		var doc struct {
			Models []*campaign.Matrix `json:"models"`
		}
		if err := json.Unmarshal(d, &doc); err != nil {
			return nil, usagef("%s: %v", files[i], err)
		}
		for _, mx := range doc.Models {
			m, ok := byModel[mx.Model]
			if !ok {
				m = &campaign.Matrix{Model: mx.Model, Backend: mx.Backend, Isolation: mx.Isolation, Broker: mx.Broker, Seed: mx.Seed, Runs: mx.Runs, Strategies: mx.Strategies, Columns: mx.Columns}
				byModel[mx.Model] = m
				merged = append(merged, m)
			}
			if m.Seed != mx.Seed || m.Runs != mx.Runs || m.Backend != mx.Backend || m.Isolation != mx.Isolation || m.Broker != mx.Broker || !slices.Equal(m.Strategies, mx.Strategies) || !slices.Equal(m.Columns, mx.Columns) {
				return nil, usagef("%s: model %s is not a shard of the same matrix as the other files (seed, runs, backend, isolation, broker, strategies or faults differ)", files[i], mx.Model)
			}
			if slices.Contains(shards[mx.Model], mx.Shard) {
				return nil, usagef("%s: shard %q of model %s is given twice", files[i], mx.Shard, mx.Model)
			}
			shards[mx.Model] = append(shards[mx.Model], mx.Shard)
			m.Cells = append(m.Cells, mx.Cells...)
		}
	}
	for _, m := range merged {
		var cells []campaign.Cell
		var missing []string
		for _, s := range m.Strategies {
			for _, col := range m.Columns {
				c, ok := m.Cell(s, col)
				if !ok {
					missing = append(missing, s+"/"+col)
					continue
				}
				cells = append(cells, c)
			}
		}
		if len(missing) > 0 {
			return nil, usagef("model %s: %s missing (a shard not given?): %s", m.Model, report.Plural(len(missing), "cell"), strings.Join(missing[:min(3, len(missing))], ", "))
		}
		m.Cells = cells
	}
	return merged, nil
}

// mergeRuns gives the outcome of the whole run from its shards': the
// shards' blocks of runs follow one another, so the first violation is the
// first violating shard's, and the runs and faults counted are those of
// the shards up to it.
func mergeRuns(files []string, docs [][]byte) (runJSON, error) {
	type part struct {
		v  runJSON
		sh shard
	}
	var parts []part
	for i, d := range docs {
		var v runJSON
		if err := json.Unmarshal(d, &v); err != nil {
			return runJSON{}, usagef("%s: %v", files[i], err)
		}
		sh, err := parseShard(v.Shard)
		if err != nil || sh.n <= 1 {
			return runJSON{}, usagef("%s: not the JSON of a shard of a run (run --shard K/N --json)", files[i])
		}
		parts = append(parts, part{v, sh})
	}
	slices.SortFunc(parts, func(a, b part) int { return a.sh.k - b.sh.k })
	first := parts[0]
	for i, p := range parts {
		if p.sh.n != first.sh.n || p.sh.k != i+1 || p.v.Seed != first.v.Seed || p.v.Strategy != first.v.Strategy || p.v.Model != first.v.Model || p.v.Backend != first.v.Backend || p.v.Isolation != first.v.Isolation || p.v.Broker != first.v.Broker {
			return runJSON{}, usagef("the files are not the shards 1..%d of one run (same strategy, model, backend and seed): shard %s", first.sh.n, p.v.Shard)
		}
	}
	if len(parts) != first.sh.n {
		return runJSON{}, usagef("%d of the %d shards given", len(parts), first.sh.n)
	}
	out := runJSON{Strategy: first.v.Strategy, Model: first.v.Model, Backend: first.v.Backend, Isolation: first.v.Isolation, Broker: first.v.Broker, Seed: first.v.Seed,
		Verdict: string(histories.Pass), Anomalies: []histories.Anomaly{}, Injected: map[string]int{}}
	for _, p := range parts {
		for k, n := range p.v.Injected {
			out.Injected[k] += n
		}
		out.Inconclusive += p.v.Inconclusive
		if out.Reason == "" {
			out.Reason = p.v.Reason
		}
		if p.v.Verdict == string(histories.Violation) {
			// The violating shard's runs count from the campaign's first.
			injected, inconclusive, reason := out.Injected, out.Inconclusive, out.Reason
			out = p.v
			out.Shard, out.Injected, out.Inconclusive, out.Reason = "", injected, inconclusive, reason
			return out, nil
		}
		out.Runs += p.v.Runs
		if p.v.Verdict == string(histories.Inconclusive) {
			out.Verdict = string(histories.Inconclusive)
		}
	}
	return out, nil
}

func printMergedRun(w io.Writer, v runJSON) {
	switch histories.Verdict(v.Verdict) {
	case histories.Pass:
		fmt.Fprintf(w, "PASS: %d runs, no violation (strategy %s, model %s, backend %s, seed %d)\n", v.Runs, v.Strategy, v.Model, v.Backend, v.Seed)
	case histories.Inconclusive:
		fmt.Fprintf(w, "INCONCLUSIVE after %d runs (%d undecided): %s\n", v.Runs, v.Inconclusive, v.Reason)
	default:
		fmt.Fprintf(w, "VIOLATION after %d runs (seed %d): %s\n", v.RunsToFailure, v.FailingSeed, anomalyList(v.Anomalies))
		for _, f := range v.Findings {
			fmt.Fprintf(w, "  %s: %s\n", f.Anomaly, f.Text)
		}
		if v.History != "" {
			fmt.Fprintf(w, "Saved:  %s\nShow:   %s show %s\n", v.History, self(), v.History)
		}
	}
}

// mergeJUnit joins JUnit reports into one suite, in the order given.
func mergeJUnit(stdout io.Writer, files []string, docs [][]byte, out string) (int, error) {
	var cases []junitCase
	name := ""
	for i, d := range docs {
		var s junitSuite
		if err := xml.Unmarshal(d, &s); err != nil {
			return exitUsage, usagef("%s: not a JUnit report: %v", files[i], err)
		}
		if name == "" {
			name = s.Name
		}
		cases = append(cases, s.Cases...)
	}
	if out == "" {
		b, err := junitXML(name, cases)
		if err != nil {
			return exitInconclusive, err
		}
		_, err = stdout.Write(b)
		return junitCode(cases), err
	}
	if err := writeJUnit(out, name, cases); err != nil {
		return exitInconclusive, err
	}
	return junitCode(cases), nil
}

func junitCode(cases []junitCase) int {
	code := exitPass
	for _, c := range cases {
		switch {
		case c.Failure != nil:
			code = exitViolation
		case c.Error != nil && code == exitPass:
			code = exitInconclusive
		}
	}
	return code
}
