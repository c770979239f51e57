package cli

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
		isolation    = fs.String("isolation", "read-committed", "transaction isolation level: read-committed (PostgreSQL's default), repeatable-read or serializable")
		broker       = fs.String("broker", "queue", "broker the consumers read from: queue (per-message acks and requeues) or log (partitions, offset commits, a consumer group, as Kafka)")
		lockTimeout  = fs.Duration("lock-timeout", 0, "how long a write waits for a row lock before it fails (default: until the holder ends, as PostgreSQL)")
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
		shardFlag    = fs.String("shard", "", "run only shard K of N of the runs (K/N, with --seed; merge the shards' --json with 'oncecheck merge')")
		quiet        = fs.Bool("q", false, "quiet: no progress and no explanation; the verdict and where the counterexample is")
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
	sh, err := parseShard(*shardFlag)
	if err != nil {
		return exitUsage, err
	}
	if sh.n > 1 && *seed == 0 {
		return exitUsage, usagef("--shard needs --seed: every shard must draw from the same seed")
	}
	if sh.n > 1 && *exhaustive {
		return exitUsage, usagef("--shard splits sampled runs; --exhaustive cannot be split")
	}
	if err := checkReportPath("--junit", *junit); err != nil {
		return exitUsage, err
	}
	if *pgDSN != "" {
		if err := checkDSN(*pgDSN); err != nil {
			return exitUsage, err
		}
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
		Isolation: adapters.Isolation(*isolation), LockTimeout: *lockTimeout, Broker: *broker,
	})
	if err != nil {
		if uerr := asUsage(err); uerr != nil {
			return exitUsage, uerr
		}
		if *asJSON {
			return exitInconclusive, encodeJSON(stdout, runJSON{Strategy: *strategy, Model: *modelName, Backend: *backend, Seed: *seed,
				Verdict: string(histories.Inconclusive), Anomalies: []histories.Anomaly{}, Injected: map[string]int{}, Reason: err.Error()})
		}
		fmt.Fprintf(stdout, "INCONCLUSIVE: %v\n", err)
		return exitInconclusive, nil
	}
	defer func() {
		if err := tester.Close(); err != nil {
			fmt.Fprintf(stderr, "oncecheck run: warning: %v\n", err)
		}
	}()
	if *exhaustive {
		return runExhaustive(ctx, stdout, stderr, tester, *faultList, *out, *maxMessages, *maxFaults, *asJSON)
	}
	if *seed == 0 {
		*seed = randomSeed()
	}
	started := time.Now()
	lo, hi := sh.block(*runs)
	if !*asJSON && !*quiet {
		mode := ""
		if *freeRunning {
			mode = " free-running"
		}
		shard := ""
		if sh.n > 1 {
			shard = fmt.Sprintf(" shard=%s (runs %d-%d)", sh, lo+1, hi)
		}
		fmt.Fprintf(stdout, "oncecheck run: strategy=%s model=%s backend=%s faults=%s runs=%d seed=%d%s%s\n",
			*strategy, *modelName, *backend, *faultList, *runs, *seed, mode, shard)
	}
	bar := newProgress(stderr)
	progress := bar.update
	if *quiet || hi == lo {
		progress = nil
	}
	var rep campaign.Report
	if hi > lo {
		rep, err = tester.Search(ctx, campaign.SearchOptions{
			Runs: hi - lo, Seed: *seed + uint64(lo), Out: *out, KeepAll: *keepAll, ShrinkTime: *shrinkTime, CheckDeterminism: *determinism,
			Progress: progress, Parallel: *parallel,
		})
	} else { // more shards than runs: this one has none
		rep = campaign.Report{Config: tester.Config(), Verdict: histories.Pass, Injected: map[faults.Kind]int{}}
	}
	bar.done()
	if uerr := asUsage(err); uerr != nil {
		return exitUsage, uerr
	}
	if err != nil {
		if *asJSON {
			return exitInconclusive, encodeJSON(stdout, runJSON{Strategy: *strategy, Model: *modelName, Backend: *backend, Seed: *seed,
				Verdict: string(histories.Inconclusive), Anomalies: []histories.Anomaly{}, Injected: map[string]int{}, Reason: err.Error()})
		}
		return exitInconclusive, err
	}
	rep.Seed = *seed
	if rep.Verdict == histories.Violation {
		rep.RunsToFailure += lo
		rep.Runs += lo
	}
	v := newRunJSON(rep, *strategy, sh)
	var code int
	if *asJSON {
		if err := encodeJSON(stdout, v); err != nil {
			return exitInconclusive, err
		}
		code = exitCode(rep.Verdict)
	} else {
		code = printReport(stdout, stderr, rep, ctx.Err() != nil, *quiet)
	}
	if *junit != "" {
		var explanation string
		if rep.Verdict == histories.Violation {
			var b strings.Builder
			_ = report.Explanation(&b, rep.Minimal, rep.Result) // a strings.Builder does not fail
			explanation = b.String()
		}
		c := runJUnitCase(v, *faultList, explanation, time.Since(started))
		if err := writeJUnit(*junit, "oncecheck run", []junitCase{c}); err != nil {
			return exitInconclusive, err
		}
	}
	if ctx.Err() != nil && code != exitViolation {
		return exitInterrupted, nil
	}
	return code, nil
}

// runJUnitCase is a run's outcome as a JUnit test case: a violation is a
// failure with its explanation, an inconclusive run an error.
func runJUnitCase(v runJSON, faultList, explanation string, took time.Duration) junitCase {
	c := junitCase{Name: fmt.Sprintf("%s/%s/%s", v.Strategy, v.Model, faultList), Classname: "oncecheck.run", Time: took.Seconds()}
	switch histories.Verdict(v.Verdict) {
	case histories.Violation:
		var b strings.Builder
		b.WriteString(explanation)
		if v.SaveError != "" {
			fmt.Fprintf(&b, "\nNot saved where asked: %s\n", v.SaveError)
		}
		if v.History != "" {
			fmt.Fprintf(&b, "\nSaved: %s\nReplay: %s replay %s\n", v.History, self(), v.History)
		}
		c.failed(fmt.Sprintf("%s is not exactly-once: %s (run %d, seed %d)", v.Strategy, anomalyList(v.Anomalies), v.RunsToFailure, v.FailingSeed), b.String())
	case histories.Inconclusive:
		c.inconclusive(v.Reason)
	default:
		c.SystemOut = fmt.Sprintf("%d runs passed, seed %d", v.Runs, v.Seed)
	}
	return c
}

func anomalyList(as []histories.Anomaly) string {
	names := make([]string, len(as))
	for i, a := range as {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// encodeJSON writes v as one line of JSON.
func encodeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

func randomSeed() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.LittleEndian.Uint64(b[:]) >> 1 // keep it positive as an int64
}

func printReport(w, stderr io.Writer, rep campaign.Report, interrupted, quiet bool) int {
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
	if !quiet {
		_ = report.Explanation(w, h, rep.Result)
	}
	if rep.SaveError != nil {
		fmt.Fprintf(w, "\nNot saved where asked: %v\n", rep.SaveError)
		if rep.Path == "" {
			fmt.Fprintf(w, "Not saved in %s either: the history follows on standard error.\n", campaign.FallbackDir())
			_ = h.Encode(stderr)
			return exitViolation
		}
		fmt.Fprintf(w, "Saved instead in the fallback directory.\n")
	}
	fmt.Fprintf(w, "\nSaved:  %s\n", rep.Path)
	fmt.Fprintf(w, "Replay: %s replay %s\n", self(), rep.Path)
	fmt.Fprintf(w, "Check:  %s check %s\n", self(), rep.Path)
	return exitViolation
}

func runExhaustive(ctx context.Context, stdout, stderr io.Writer, tester *campaign.Tester, faultList, out string, maxMessages, maxFaults int, asJSON bool) (int, error) {
	cfg := tester.Config()
	textOut := stdout
	if asJSON { // one JSON object says the outcome
		stdout = io.Discard
	}
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
	if asJSON {
		v := exhaustiveJSON{Strategy: cfg.Strategy.Name, Model: cfg.Model.Name(), Backend: cfg.Backend.Name(), Verdict: string(rep.Verdict),
			Anomalies: rep.Result.Anomalies, Findings: rep.Result.Findings, Workloads: rep.Workloads, Schedules: rep.Schedules,
			History: rep.Path, Reason: rep.Reason}
		if v.Anomalies == nil {
			v.Anomalies = []histories.Anomaly{}
		}
		if err := encodeJSON(textOut, v); err != nil {
			return exitInconclusive, err
		}
		if ctx.Err() != nil && rep.Verdict != histories.Violation {
			return exitInterrupted, nil
		}
		return exitCode(rep.Verdict), nil
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

// exhaustiveJSON is the outcome of run --exhaustive --json.
type exhaustiveJSON struct {
	Strategy  string              `json:"strategy"`
	Model     string              `json:"model"`
	Backend   string              `json:"backend"`
	Verdict   string              `json:"verdict"`
	Anomalies []histories.Anomaly `json:"anomalies"`
	Findings  []checkers.Finding  `json:"findings,omitempty"`
	Workloads int                 `json:"workloads"`
	Schedules int                 `json:"schedules"`
	History   string              `json:"history,omitempty"`
	Reason    string              `json:"reason,omitempty"`
}

// runJSON is a run's outcome as one JSON object (run --json, merge).
type runJSON struct {
	Strategy      string              `json:"strategy"`
	Model         string              `json:"model"`
	Backend       string              `json:"backend"`
	Isolation     string              `json:"isolation,omitempty"`
	Broker        string              `json:"broker,omitempty"` // "log", or empty for the queue
	Seed          uint64              `json:"seed"`
	Shard         string              `json:"shard,omitempty"`
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
	Inconclusive  int                 `json:"inconclusive,omitempty"`
	Reason        string              `json:"reason,omitempty"`
	Goroutines    int                 `json:"goroutines_left,omitempty"`
}

func newRunJSON(rep campaign.Report, strategy string, sh shard) runJSON {
	injected := map[string]int{}
	for k, n := range rep.Injected {
		injected[string(k)] = n
	}
	out := runJSON{
		Strategy: strategy, Model: rep.Config.Model.Name(), Backend: rep.Config.Backend.Name(), Isolation: string(rep.Config.Isolation),
		Seed: rep.Seed, Shard: sh.String(), Goroutines: rep.Goroutines,
		Verdict: string(rep.Verdict), Anomalies: rep.Result.Anomalies, Findings: rep.Result.Findings,
		Runs: rep.Runs, RunsToFailure: rep.RunsToFailure, FailingSeed: rep.FailingSeed, History: rep.Path,
		MsToFailure: millis(rep.TimeToFailure), ShrinkMs: millis(rep.ShrinkTime),
		Injected: injected, Inconclusive: rep.Inconclusive, Reason: rep.Reason,
	}
	if rep.Config.Broker == "log" {
		out.Broker = rep.Config.Broker
	}
	if rep.SaveError != nil {
		out.SaveError = rep.SaveError.Error()
	}
	if out.Anomalies == nil {
		out.Anomalies = []histories.Anomaly{}
	}
	return out
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
