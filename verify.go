package oncecheck

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/report"
)

// ReplayEnv names the environment variable that makes Verify replay a saved
// history instead of searching: ONCECHECK_REPLAY=path/to/history.jsonl.
const ReplayEnv = "ONCECHECK_REPLAY"

// SeedEnv names the environment variable that sets Verify's seed.
const SeedEnv = "ONCECHECK_SEED"

// RunsEnv names the environment variable that sets Verify's number of
// runs.
const RunsEnv = "ONCECHECK_RUNS"

// DefaultOut is where Verify saves counterexamples when go test is run
// without -artifacts: relative to the test's package directory (go
// ignores testdata directories).
const DefaultOut = "testdata/oncecheck"

// The go test command line sets Verify's runs and seed too:
// go test -run TestX . -args -oncecheck.runs=5000 -oncecheck.seed=7
// (or before -args, as go test passes unknown flags on). They are
// registered in test binaries only, as testing's own flags are.
var (
	runsFlag *int
	seedFlag *uint64
)

func init() {
	if testing.Testing() {
		runsFlag = flag.Int("oncecheck.runs", 0, "runs of each oncecheck.Verify (default 300, 60 with -short; $"+RunsEnv+")")
		seedFlag = flag.Uint64("oncecheck.seed", 0, "seed of each oncecheck.Verify (default: from the test's name; $"+SeedEnv+")")
	}
}

// TB is the part of testing.TB that Verify uses; *testing.T is one.
type TB interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Skipf(format string, args ...any)
}

// Spec says what Verify verifies: the handler as a strategy and the
// business logic it must be equivalent to.
type Spec struct {
	// Model is the reference business logic.
	Model model.Model
	// Strategy is the handler under test: a name and its factories.
	Strategy adapters.Strategy
	// Faults are the fault kinds to inject (default: all).
	Faults []faults.Kind
	// Runs is the number of generated cases (default: -oncecheck.runs,
	// else $ONCECHECK_RUNS, else 300; 60 with -short).
	Runs int
	// Seed is the campaign's seed (default: -oncecheck.seed, else
	// $ONCECHECK_SEED, else derived from the test's name, so that a test
	// is reproducible and -count=N repeats the same cases).
	Seed uint64
	// MaxMessages and MaxFaults bound each case (defaults 8 and 3).
	MaxMessages, MaxFaults int
	// Backend is where the runs' stores come from (default: in memory,
	// memstore.Backend; pgstore.Backend for PostgreSQL). A backend that
	// names no server (adapters.ErrNoServer) skips the test, or fails it
	// when $CI is set.
	Backend adapters.Backend
	// Out is where counterexamples are saved (default: the test's
	// T.ArtifactDir when go test has -artifacts, so that they land under
	// its -outputdir; DefaultOut otherwise).
	Out string
	// CLI is the package of a command of the module's own that runs
	// cli.Main over a catalogue with Model and Strategy, relative to the
	// module's root (as "./cmd/oncecheck"): a failure then prints the
	// show --html, check and replay commands through it.
	CLI string
	// Downstream is the output-copy policy (default dedup-by-id).
	Downstream checkers.Downstream
	// Cache is the backend of the handler's Env.Cache (default: the
	// simulation's in-memory cache; rediscache.Backend for a real Redis).
	Cache adapters.CacheBackend
	// MaxDelay bounds how late a late fault's copy arrives (default
	// faults.DefaultMaxDelay).
	MaxDelay time.Duration
	// FreeRunning runs the consumers truly in parallel (campaign.Config):
	// on PostgreSQL, their transactions meet as in production. A failure
	// is then not reproducible by seed; its saved history is the evidence.
	FreeRunning bool
	// Isolation is the transactions' isolation level (default read
	// committed, PostgreSQL's; a handler may ask for its own with
	// Env.BeginTx or sqlenv.BeginTx).
	Isolation adapters.Isolation
	// Broker is the broker the handler consumes from: "queue" (default),
	// per-message acks and requeues, or "log", a partitioned log with
	// offset commits and a consumer group, as Kafka's (campaign.Config).
	Broker string
}

// Verify checks, in a test, that a handler is exactly-once: it generates
// cases, runs them with faults, and on the first violation shrinks it,
// saves it, and fails t with the explanation, the saved file and the
// command that replays it. A violation is reported only if its case,
// run again, gives the same history event for event; otherwise (and when
// the first case run twice differs) t fails saying the handler is not
// deterministic, and why where it can tell. Goroutines the handler left
// running after its runs fail t too, with their count. With $ONCECHECK_REPLAY set to a saved history it
// replays that history instead of searching.
//
//	func TestShopIsExactlyOnce(t *testing.T) {
//		t.Parallel()
//		oncecheck.Verify(t, oncecheck.Spec{Model: shop.Model, Strategy: shop.Strategy})
//	}
func Verify(t TB, spec Spec) {
	t.Helper()
	if spec.Model == nil || spec.Strategy.NewHandler == nil || spec.Strategy.Name == "" {
		t.Errorf("oncecheck: Spec needs a Model and a Strategy with a name and a NewHandler")
		return
	}
	if path := os.Getenv(ReplayEnv); path != "" {
		verifyReplay(t, spec, path)
		return
	}
	if spec.Runs == 0 {
		spec.Runs = defaultRuns()
	}
	if spec.Seed == 0 {
		spec.Seed = seedFor(t.Name())
	}
	if spec.Out == "" {
		spec.Out = defaultOut(t)
	}
	tester, err := campaign.New(campaign.Config{
		Model: spec.Model, Strategy: spec.Strategy, Backend: spec.Backend, Faults: spec.Faults,
		MaxMessages: spec.MaxMessages, MaxFaults: spec.MaxFaults,
		Downstream: spec.Downstream, FreeRunning: spec.FreeRunning, Isolation: spec.Isolation,
		Cache: spec.Cache, MaxDelay: spec.MaxDelay, Broker: spec.Broker,
	})
	if err != nil {
		failOrSkip(t, err)
		return
	}
	defer func() {
		if err := tester.Close(); err != nil {
			t.Logf("oncecheck: warning: %v", err)
		}
	}()
	start := time.Now()
	rep, err := tester.Search(context.Background(), campaign.SearchOptions{Runs: spec.Runs, Seed: spec.Seed, Out: spec.Out})
	if err != nil {
		t.Errorf("oncecheck: %v", err)
		return
	}
	if rep.LeftoverText != "" {
		t.Errorf("oncecheck: %s: %s", spec.Strategy.Name, rep.LeftoverText)
	}
	switch {
	case rep.NotDeterministic != "":
		t.Errorf("oncecheck: %s is not deterministic, so no counterexample of it could be trusted: %s", spec.Strategy.Name, rep.NotDeterministic)
	case rep.Verdict == histories.Pass:
		t.Logf("oncecheck: %s is exactly-once over %d runs (seed %d, %s; faults injected: %s)",
			spec.Strategy.Name, rep.Runs, spec.Seed, time.Since(start).Round(time.Millisecond), injectedSummary(rep.Injected))
	case rep.Verdict == histories.Inconclusive:
		t.Errorf("oncecheck: inconclusive after %d runs: %s", rep.Runs, rep.Reason)
	default:
		t.Errorf("%s", failureText(t, spec, rep.Minimal, rep.Result, rep.Path, rep.SaveError, rep.RunsToFailure))
	}
}

// failOrSkip reports a campaign that cannot start: a test whose backend
// names no server is skipped, with the reason, except in CI ($CI set).
func failOrSkip(t TB, err error) {
	t.Helper()
	if errors.Is(err, adapters.ErrNoServer) && os.Getenv("CI") == "" {
		t.Skipf("oncecheck: %v (with $CI set, this fails the test)", err)
		return
	}
	t.Errorf("oncecheck: %v", err)
}

func verifyReplay(t TB, spec Spec, path string) {
	t.Helper()
	h, err := histories.Load(path)
	if err != nil {
		t.Errorf("oncecheck: %s: %v", ReplayEnv, err)
		return
	}
	cat := catalogue.Builtin().WithModels(spec.Model).WithStrategies(spec.Strategy)
	o := ReplayOptions{Strategy: spec.Strategy.Name}
	if spec.Backend != nil {
		cat, o.Backend = cat.WithBackends(spec.Backend), spec.Backend.Name()
	}
	if spec.Cache != nil {
		cat, o.Cache = cat.WithCaches(spec.Cache), spec.Cache.Name()
	}
	o.Catalogue = cat
	replayed, res, err := Replay(h, o)
	if err != nil {
		failOrSkip(t, fmt.Errorf("replay %s: %w", path, err))
		return
	}
	same := histories.FirstDifference(h.Events, replayed.Events) == 0
	t.Logf("oncecheck: replayed %s (events identical to the saved ones: %v)", path, same)
	if res.Verdict != histories.Pass {
		t.Errorf("%s", failureText(t, spec, replayed, res, path, nil, 0))
	}
}

// failureText explains a failure for a test log.
func failureText(t TB, spec Spec, h *histories.History, res checkers.Result, path string, saveErr error, runs int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "oncecheck: %s is not exactly-once: %s", spec.Strategy.Name, report.Anomalies(res))
	if runs > 0 {
		fmt.Fprintf(&b, " (found in run %d)", runs)
	}
	b.WriteString("\n")
	_ = report.Explanation(&b, h, res) // a strings.Builder does not fail
	if saveErr != nil {
		fmt.Fprintf(&b, "not saved: %v\n", saveErr)
	}
	if path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		fmt.Fprintf(&b, "saved: %s\n", path)
		fmt.Fprintf(&b, "replay (from the module's root): %s\n", replayCommand(t.Name(), path))
		if tool := commandLine(spec); tool != "" {
			fmt.Fprintf(&b, "report: %s show --html report.html %s\n", tool, path)
			fmt.Fprintf(&b, "check:  %s check %s\n", tool, path)
			fmt.Fprintf(&b, "replay: %s replay %s\n", tool, path)
		} else {
			fmt.Fprintf(&b, "(for show --html, check and replay of it, set Spec.CLI to a main of yours over cli.Main: docs/writing-an-adapter.md, section 5)\n")
		}
	}
	return b.String()
}

// commandLine is the command, run from the module's root, that opens a
// history of spec's model and strategy: Spec.CLI's, or the built-in
// command line when both are built in; empty when there is none.
func commandLine(spec Spec) string {
	if spec.CLI != "" {
		return "go run " + spec.CLI
	}
	builtin := catalogue.Builtin()
	if _, err := builtin.Model(spec.Model.Name()); err != nil {
		return ""
	}
	if _, err := builtin.Strategy(spec.Strategy.Name); err != nil {
		return ""
	}
	return "go run github.com/oncecheck/oncecheck/cmd/oncecheck"
}

// defaultRuns is -oncecheck.runs, else $ONCECHECK_RUNS, else 300 (60 with
// -short).
func defaultRuns() int {
	if runsFlag != nil && *runsFlag > 0 {
		return *runsFlag
	}
	if s := os.Getenv(RunsEnv); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	if testing.Testing() && flag.Parsed() && testing.Short() {
		return 60
	}
	return 300
}

// defaultOut is the test's artifact directory when go test has
// -artifacts, DefaultOut otherwise.
func defaultOut(t TB) string {
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		if a, ok := t.(interface{ ArtifactDir() string }); ok {
			return a.ArtifactDir()
		}
	}
	return DefaultOut
}

// replayCommand is the command that replays the history at path in the
// test called name, run from the root of the module under test: the path
// made absolute, the test's package named relative to the root (go test
// runs a test in its package's directory).
func replayCommand(name, path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	pkg := "."
	if wd, err := os.Getwd(); err == nil {
		for root := wd; ; root = filepath.Dir(root) {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				if rel, err := filepath.Rel(root, wd); err == nil && rel != "." {
					pkg = "./" + filepath.ToSlash(rel)
				}
				break
			}
			if filepath.Dir(root) == root {
				break
			}
		}
	}
	return fmt.Sprintf("%s=%s go test -run '^%s$' %s", ReplayEnv, path, name, pkg)
}

func injectedSummary(m map[faults.Kind]int) string {
	var parts []string
	for _, k := range faults.AllKinds {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// seedFor returns -oncecheck.seed, $ONCECHECK_SEED, or a seed derived
// from a test name.
func seedFor(name string) uint64 {
	if seedFlag != nil && *seedFlag != 0 {
		return *seedFlag
	}
	if s := os.Getenv(SeedEnv); s != "" {
		var seed uint64
		if _, err := fmt.Sscan(s, &seed); err == nil && seed != 0 {
			return seed
		}
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return h.Sum64()>>1 | 1
}
