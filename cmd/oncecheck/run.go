package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/report"
)

func runCmd(ctx context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("run", "run --strategy NAME [flags]", `  oncecheck run --strategy naive --faults redelivery --runs 200
  oncecheck run --strategy dedup --faults crash --runs 500 --seed 42
  oncecheck run --strategy outbox --faults all --runs 2000 --keep-all
`, stdout)
	var (
		strategy     = fs.String("strategy", "", "strategy under test (one of: "+strings.Join(cat.StrategyNames(), ", ")+")")
		modelName    = fs.String("model", "orders", "reference model")
		backend      = fs.String("backend", "mem", "store backend: mem, or pg (PostgreSQL)")
		pgDSN        = fs.String("pg", "", "PostgreSQL DSN for --backend pg (default: $ONCECHECK_PG)")
		keepDB       = fs.Bool("keep-db", false, "keep the pg backend's schema after the run, for inspection")
		cacheName    = fs.String("cache", "mem", "backend of the handlers' cache (Env.Cache): mem, or redis ($ONCECHECK_REDIS, else 127.0.0.1:6379)")
		maxDelay     = fs.Duration("max-delay", faults.DefaultMaxDelay, "longest delay of a late fault's copy")
		faultList    = fs.String("faults", "all", "comma-separated fault kinds ("+strings.Join(kindNames(), ", ")+"), or all")
		runs         = fs.Int("runs", 100, "number of runs")
		seed         = fs.Uint64("seed", 0, "campaign seed; run i uses seed+i (default: random, always printed)")
		out          = fs.String("out", "oncecheck-results", "directory for saved histories")
		keepAll      = fs.Bool("keep-all", false, "save every history, not only failures")
		maxMessages  = fs.Int("max-messages", 8, "most logical messages per run")
		maxFaults    = fs.Int("max-faults", 3, "most faults per run")
		downstream   = fs.String("downstream", "dedup-by-id", "output-copy policy: dedup-by-id or none")
		shrinkTime   = fs.Duration("shrink-time", 20*time.Second, "time budget for shrinking a failure")
		checkTimeout = fs.Duration("check-timeout", 30*time.Second, "time budget per check; expiry is inconclusive")
		swarm        = fs.Bool("swarm", true, "with several fault kinds, let each run enable a random subset with random weights")
		determinism  = fs.Bool("check-determinism", false, "run every case twice and compare the histories")
		junit        = fs.String("junit", "", "also write a JUnit XML report to this file")
		asJSON       = fs.Bool("json", false, "print the outcome as one JSON object instead of text")
		parallel     = fs.Int("parallel", runtime.NumCPU(), "runs executed at once (the outcome is that of a serial run)")
		freeRunning  = fs.Bool("free-running", false, "run the consumers truly in parallel instead of interleaving them deterministically (runs are then not reproducible by seed; each failing history is)")
		consumers    = fs.Int("consumers", 0, "consumers of a --free-running run (default 4)")
		exhaustive   = fs.Bool("exhaustive", false, "enumerate every placement of up to --max-faults faults over every workload of up to --max-messages messages (defaults 2 and 3) instead of sampling")
	)
	rest, err := parse(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(rest) > 0 {
		return exitUsage, usagef("unexpected argument %q", rest[0])
	}
	if *exhaustive {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["max-messages"] {
			*maxMessages = 3
		}
		if !set["max-faults"] {
			*maxFaults = 2
		}
	}
	if *strategy == "" {
		return exitUsage, usagef("--strategy is required (one of: %s)", strings.Join(cat.StrategyNames(), ", "))
	}
	if *freeRunning && (*determinism || *exhaustive) {
		return exitUsage, usagef("--free-running runs are not deterministic: --check-determinism and --exhaustive need the scheduler")
	}
	kinds, err := faults.ParseKinds(*faultList)
	if err != nil {
		return exitUsage, usagef("--faults: %v", err)
	}
	policy, err := checkers.ParseDownstream(*downstream)
	if err != nil {
		return exitUsage, usagef("--downstream: %v", err)
	}
	if *runs < 1 {
		return exitUsage, usagef("--runs must be at least 1")
	}
	if *pgDSN != "" || *keepDB {
		cat = cat.WithBackends(pgstore.Backend{DSN: *pgDSN, Keep: *keepDB})
	}
	m, s, b, err := resolve(cat, *modelName, *strategy, *backend)
	if err != nil {
		return exitUsage, err
	}
	cache, err := resolveCache(cat, *cacheName)
	if err != nil {
		return exitUsage, err
	}
	tester, err := campaign.New(campaign.Config{
		Model: m, Strategy: s, Backend: b, Faults: kinds, Cache: cache, MaxDelay: *maxDelay,
		MaxMessages: *maxMessages, MaxFaults: *maxFaults, Downstream: policy, CheckTimeout: *checkTimeout,
		NoSwarm: !*swarm, FreeRunning: *freeRunning, Consumers: *consumers,
	})
	if err != nil {
		if uerr := asUsage(err); uerr != nil {
			return exitUsage, uerr
		}
		fmt.Fprintf(stdout, "INCONCLUSIVE: %v\n", err)
		return exitInconclusive, nil
	}
	defer tester.Close()
	if *exhaustive {
		return runExhaustive(ctx, stdout, stderr, tester, *faultList, *out, *maxMessages, *maxFaults)
	}
	if *seed == 0 {
		*seed = randomSeed()
	}
	started := time.Now()
	if !*asJSON {
		mode := ""
		if *freeRunning {
			mode = " free-running"
		}
		fmt.Fprintf(stdout, "oncecheck run: strategy=%s model=%s backend=%s faults=%s runs=%d seed=%d%s\n",
			*strategy, *modelName, *backend, *faultList, *runs, *seed, mode)
	}
	bar := newProgress(stderr)
	rep, err := tester.Search(ctx, campaign.SearchOptions{
		Runs: *runs, Seed: *seed, Out: *out, KeepAll: *keepAll, ShrinkTime: *shrinkTime, CheckDeterminism: *determinism,
		Progress: bar.update, Parallel: *parallel,
	})
	bar.done()
	if uerr := asUsage(err); uerr != nil {
		return exitUsage, uerr
	}
	if err != nil {
		return exitInconclusive, err
	}
	var code int
	if *asJSON {
		if code, err = printReportJSON(stdout, rep, *strategy); err != nil {
			return exitInconclusive, err
		}
	} else {
		code = printReport(stdout, rep, ctx.Err() != nil)
	}
	if *junit != "" {
		c := junitCase{Name: fmt.Sprintf("%s/%s/%s", *strategy, *modelName, *faultList), Classname: "oncecheck.run",
			Time: time.Since(started).Seconds()}
		switch rep.Verdict {
		case histories.Violation:
			var b strings.Builder
			_ = report.Explanation(&b, rep.Minimal, rep.Result) // a strings.Builder does not fail
			if rep.SaveError != nil {
				fmt.Fprintf(&b, "\nNot saved: %v\n", rep.SaveError)
			} else {
				fmt.Fprintf(&b, "\nSaved: %s\nReplay: %s replay %s\n", rep.Path, self(), rep.Path)
			}
			c.failed(fmt.Sprintf("%s is not exactly-once: %s (run %d, seed %d)", *strategy, report.Anomalies(rep.Result), rep.RunsToFailure, rep.FailingSeed), b.String())
		case histories.Inconclusive:
			c.inconclusive(rep.Reason)
		default:
			c.SystemOut = fmt.Sprintf("%d runs passed, seed %d", rep.Runs, *seed)
		}
		if err := writeJUnit(*junit, "oncecheck run", []junitCase{c}); err != nil {
			return exitInconclusive, err
		}
	}
	if ctx.Err() != nil && code != exitViolation {
		return exitInterrupted, nil
	}
	return code, nil
}

func randomSeed() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.LittleEndian.Uint64(b[:]) >> 1 // keep it positive as an int64
}

func printReport(w io.Writer, rep campaign.Report, interrupted bool) int {
	counts := make([]string, 0, len(faults.AllKinds))
	for _, k := range faults.AllKinds {
		if n, ok := rep.Injected[k]; ok {
			counts = append(counts, fmt.Sprintf("%s=%d", k, n))
		}
	}
	injected := strings.Join(counts, " ")
	if injected == "" {
		injected = "none"
	}
	if interrupted {
		fmt.Fprintf(w, "interrupted after %d of the runs; summary of those:\n", rep.Runs)
	}
	if rep.LeftoverText != "" {
		fmt.Fprintf(w, "%s: %s\n", colour(w, amber, "GOROUTINES LEFT"), rep.LeftoverText)
	}
	switch rep.Verdict {
	case histories.Pass:
		fmt.Fprintf(w, "%s: %d runs, no violation (faults injected: %s)\n", colour(w, green, "PASS"), rep.Runs, injected)
		if rep.DeterminismChecked {
			fmt.Fprintf(w, "determinism: every run gave the same history twice\n")
		}
		return exitPass
	case histories.Inconclusive:
		fmt.Fprintf(w, "%s after %d runs (%d undecided): %s\n", colour(w, amber, "INCONCLUSIVE"), rep.Runs, rep.Inconclusive, rep.Reason)
		return exitInconclusive
	}
	h := rep.Minimal
	fmt.Fprintf(w, "%s after %d runs (seed %d, %s): %s\n", colour(w, red, "VIOLATION"), rep.RunsToFailure, rep.FailingSeed, seconds(rep.TimeToFailure), report.Anomalies(rep.Result))
	fmt.Fprintf(w, "faults injected across the runs: %s\n", injected)
	if rep.ShrinkError != nil {
		fmt.Fprintf(w, "(not shrunk: %v)\n", rep.ShrinkError)
	} else {
		fmt.Fprintf(w, "shrunk from %s and %s to %s and %s in %s\n",
			report.Plural(len(rep.Original.Header.Workload), "message"), report.Plural(len(rep.Original.Header.Plan.Faults), "fault"),
			report.Plural(len(h.Header.Workload), "message"), report.Plural(len(h.Header.Plan.Faults), "fault"), seconds(rep.ShrinkTime))
	}
	_ = report.Explanation(w, h, rep.Result)
	if rep.SaveError != nil {
		fmt.Fprintf(w, "\nNot saved: %v\n", rep.SaveError)
		return exitViolation
	}
	fmt.Fprintf(w, "\nSaved:  %s\n", rep.Path)
	fmt.Fprintf(w, "Replay: %s replay %s\n", self(), rep.Path)
	fmt.Fprintf(w, "Check:  %s check %s\n", self(), rep.Path)
	return exitViolation
}

func runExhaustive(ctx context.Context, stdout, stderr io.Writer, tester *campaign.Tester, faultList, out string, maxMessages, maxFaults int) (int, error) {
	cfg := tester.Config()
	fmt.Fprintf(stdout, "oncecheck run --exhaustive: strategy=%s model=%s faults=%s max-messages=%d max-faults=%d\n",
		cfg.Strategy.Name, cfg.Model.Name(), faultList, maxMessages, maxFaults)
	start := time.Now()
	last := start
	rep, err := tester.Exhaustive(ctx, campaign.ExhaustiveOptions{
		MaxMessages: maxMessages, MaxFaults: maxFaults, Out: out,
		Progress: func(r campaign.ExhaustiveReport) {
			if time.Since(last) < 2*time.Second {
				return
			}
			last = time.Now()
			fmt.Fprintf(stderr, "  %d workloads, %d schedules (%.0f/s)\n", r.Workloads, r.Schedules, float64(r.Schedules)/time.Since(start).Seconds())
		},
	})
	if err != nil {
		return exitInconclusive, err
	}
	fmt.Fprintf(stdout, "explored %s and %s in %s; %s checked, %s pruned as equivalent to one already explored\n",
		report.Plural(rep.Workloads, "workload shape"), report.Plural(rep.Schedules, "schedule"), time.Since(start).Round(time.Millisecond),
		report.Plural(rep.Checked, "history"), report.Plural(rep.Equivalent, "schedule"))
	switch rep.Verdict {
	case histories.Pass:
		fmt.Fprintf(stdout, "PASS: no violation with up to %d messages and %d faults\n", maxMessages, maxFaults)
		return exitPass, nil
	case histories.Inconclusive:
		fmt.Fprintf(stdout, "INCONCLUSIVE: %s\n", rep.Reason)
		if ctx.Err() != nil {
			return exitInterrupted, nil
		}
		return exitInconclusive, nil
	}
	fmt.Fprintf(stdout, "VIOLATION (a smallest one: fewest messages, then fewest faults): %s\n", report.Anomalies(rep.Result))
	_ = report.Explanation(stdout, rep.History, rep.Result)
	fmt.Fprintf(stdout, "\nSaved:  %s\n", rep.Path)
	fmt.Fprintf(stdout, "Replay: %s replay %s\n", self(), rep.Path)
	return exitViolation, nil
}

// printReportJSON prints a campaign's outcome as one JSON object.
func printReportJSON(w io.Writer, rep campaign.Report, strategy string) (int, error) {
	injected := map[string]int{}
	for k, n := range rep.Injected {
		injected[string(k)] = n
	}
	out := struct {
		Strategy      string              `json:"strategy"`
		Model         string              `json:"model"`
		Backend       string              `json:"backend"`
		Seed          uint64              `json:"seed"`
		Verdict       string              `json:"verdict"`
		Anomalies     []histories.Anomaly `json:"anomalies"`
		Findings      []checkers.Finding  `json:"findings,omitempty"`
		Runs          int                 `json:"runs"`
		RunsToFailure int                 `json:"runs_to_failure,omitempty"`
		MsToFailure   float64             `json:"ms_to_failure,omitempty"`
		ShrinkMs      float64             `json:"shrink_ms,omitempty"`
		FailingSeed   uint64              `json:"failing_seed,omitempty"`
		History       string              `json:"history,omitempty"`
		SaveError     string              `json:"save_error,omitempty"`
		Injected      map[string]int      `json:"injected"`
		Reason        string              `json:"reason,omitempty"`
		Goroutines    int                 `json:"goroutines_left,omitempty"`
	}{
		Goroutines: rep.Goroutines,
		Strategy:   strategy, Model: rep.Config.Model.Name(), Backend: rep.Config.Backend.Name(), Seed: rep.Seed,
		Verdict: string(rep.Verdict), Anomalies: rep.Result.Anomalies, Findings: rep.Result.Findings,
		Runs: rep.Runs, RunsToFailure: rep.RunsToFailure, FailingSeed: rep.FailingSeed, History: rep.Path,
		MsToFailure: millis(rep.TimeToFailure), ShrinkMs: millis(rep.ShrinkTime),
		Injected: injected, Reason: rep.Reason,
	}
	if rep.SaveError != nil {
		out.SaveError = rep.SaveError.Error()
	}
	if out.Anomalies == nil {
		out.Anomalies = []histories.Anomaly{}
	}
	if err := json.NewEncoder(w).Encode(out); err != nil {
		return exitInconclusive, err
	}
	return exitCode(rep.Verdict), nil
}

// seconds renders a duration for people: "0.04 s", "12.3 s".
func seconds(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// millis renders a duration in milliseconds for JSON.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// resolve looks the names of a run up in the catalogue.
// resolveCache returns the cache backend a --cache flag names (nil for the
// simulation's in-memory cache).
func resolveCache(cat catalogue.Catalogue, name string) (adapters.CacheBackend, error) {
	if name == "" || name == "mem" {
		return nil, nil
	}
	c, err := cat.Cache(name)
	if err != nil {
		return nil, usagef("--cache: %v", err)
	}
	return c, nil
}

func resolve(cat catalogue.Catalogue, modelName, strategy, backend string) (model.Model, adapters.Strategy, adapters.Backend, error) {
	m, err := cat.Model(modelName)
	if err != nil {
		return nil, adapters.Strategy{}, nil, asUsage(err)
	}
	s, err := cat.Strategy(strategy)
	if err != nil {
		return nil, adapters.Strategy{}, nil, asUsage(err)
	}
	b, err := cat.Backend(backend)
	if err != nil {
		return nil, adapters.Strategy{}, nil, asUsage(err)
	}
	return m, s, b, nil
}

// kindNames lists the fault kinds, for help texts.
func kindNames() []string {
	names := make([]string, len(faults.AllKinds))
	for i, k := range faults.AllKinds {
		names[i] = string(k)
	}
	return names
}
