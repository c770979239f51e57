// Package oncecheck proves or refutes a message handler's delivery guarantee.
//
// It generates workloads and fault plans with rapid, runs them against an
// adapter in a deterministic simulation, records a history, and checks with
// porcupine that the observable side effects (durable state plus published
// messages) equal those of some execution in which each logical message was
// processed exactly once. A failure comes back as a shrunk, saved, replayable
// history with an explanation.
//
// The pipeline: Generate (workload + plan) -> Execute (simulation + check) ->
// Search (many runs, shrink the first failure, save it) -> Check / Replay
// (offline, from a saved history).
package oncecheck

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/adapters"
	_ "github.com/oncecheck/oncecheck/adapters/all" // built-in strategies
	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/sim"
)

// ToolVersion is written into every history.
const ToolVersion = "0.1.0"

// Backends this build supports.
var Backends = []string{"mem", "pg"}

// PostgresEnv is the environment variable that gives the PostgreSQL DSN of
// the pg backend when Config.Postgres is empty.
const PostgresEnv = "ONCECHECK_PG"

// Case is one generated test case: a workload and a fault plan.
type Case struct {
	Workload model.Workload
	Plan     faults.Plan
}

// Config selects what to test and how.
type Config struct {
	// Model is the reference business logic (default "orders"), by name.
	Model string
	// CustomModel, when set, is used instead of looking Model up.
	CustomModel model.Model
	// CustomStrategy, when set, is used instead of looking Strategy up.
	CustomStrategy *adapters.Strategy
	// Strategy is the adapter under test.
	Strategy string
	// Backend is the store backend (default "mem").
	Backend string
	// Faults are the fault kinds to inject (default all).
	Faults []faults.Kind
	// MaxMessages bounds the logical messages per run (default 8).
	MaxMessages int
	// MaxFaults bounds the faults per run (default 3).
	MaxFaults int
	// Downstream is the output-copy policy (default dedup-by-id).
	Downstream checkers.Downstream
	// CheckTimeout bounds each check (default 30s); expiry is inconclusive.
	CheckTimeout time.Duration
	// Postgres is the DSN of the pg backend (default: $ONCECHECK_PG).
	Postgres string
	// KeepDB leaves the pg backend's schema in place after Close.
	KeepDB bool
	// NoSwarm turns off swarm plans: with several fault kinds, each plan
	// then draws every fault from all of them uniformly, instead of from a
	// random subset with random weights.
	NoSwarm bool
	// FreeRunning runs the consumers truly in parallel instead of
	// interleaving them with the deterministic scheduler (sim.Config.
	// FreeRunning): on PostgreSQL their transactions meet as they happen.
	// A run is then not a function of its seed; its saved history is the
	// evidence, and the header says it ran free.
	FreeRunning bool
	// Consumers is the number of consumers of a free-running run (default 4).
	Consumers int
}

func (c *Config) defaults() {
	if c.Model == "" {
		c.Model = "orders"
	}
	if c.Backend == "" {
		c.Backend = "mem"
	}
	if len(c.Faults) == 0 {
		c.Faults = slices.Clone(faults.AllKinds)
	}
	if c.MaxMessages == 0 {
		c.MaxMessages = 8
	}
	if c.MaxFaults == 0 {
		c.MaxFaults = 3
	}
	if c.Downstream == "" {
		c.Downstream = checkers.DownstreamDedupByID
	}
}

// Tester runs cases of one configuration.
type Tester struct {
	cfg      Config
	model    model.Model
	strategy adapters.Strategy
	store    adapters.Store // the pg backend's store; nil for mem
	storeMu  sync.Mutex     // one run at a time on store
	gen      *rapid.Generator[Case]
	buffers  sync.Pool // of *[]histories.Event: buffers of dropped histories
}

// ErrUsage wraps configuration mistakes (unknown names, bad values).
var ErrUsage = errors.New("usage error")

// New validates the configuration and returns a Tester.
func New(cfg Config) (*Tester, error) {
	if cfg.CustomModel != nil {
		cfg.Model = cfg.CustomModel.Name()
	}
	if cfg.CustomStrategy != nil {
		cfg.Strategy = cfg.CustomStrategy.Name
	}
	cfg.defaults()
	m, s := cfg.CustomModel, adapters.Strategy{}
	if m == nil {
		var err error
		if m, err = model.Lookup(cfg.Model); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	if cfg.CustomStrategy != nil {
		s = *cfg.CustomStrategy
		if s.Name == "" || s.NewHandler == nil {
			return nil, fmt.Errorf("%w: a strategy needs a name and a NewHandler", ErrUsage)
		}
	} else {
		var err error
		if s, err = adapters.Lookup(cfg.Strategy); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	if err := s.Check(m); err != nil {
		return nil, fmt.Errorf("%w: strategy %s does not apply to model %s: %w", ErrUsage, s.Name, m.Name(), err)
	}
	if !slices.Contains(Backends, cfg.Backend) {
		return nil, fmt.Errorf("%w: unknown backend %q (known: %v)", ErrUsage, cfg.Backend, Backends)
	}
	if cfg.MaxMessages < 1 || cfg.MaxFaults < 0 {
		return nil, fmt.Errorf("%w: --max-messages must be at least 1 and --max-faults at least 0", ErrUsage)
	}
	if cfg.Consumers < 0 || cfg.Consumers > 16 || cfg.Consumers != 0 && !cfg.FreeRunning {
		return nil, fmt.Errorf("%w: --consumers (1 to 16) sets the consumers of a free-running run (--free-running)", ErrUsage)
	}
	if s.SQLSchema != "" && cfg.Backend != "pg" {
		return nil, fmt.Errorf("%w: strategy %s writes SQL: run it with the pg backend", ErrUsage, s.Name)
	}
	t := &Tester{cfg: cfg, model: m, strategy: s}
	if cfg.Backend == "pg" {
		dsn := cfg.Postgres
		if dsn == "" {
			dsn = os.Getenv(PostgresEnv)
		}
		if dsn == "" {
			return nil, fmt.Errorf("%w: the pg backend needs a PostgreSQL DSN: --pg or $%s", ErrUsage, PostgresEnv)
		}
		// A free-running run's processes each hold a transaction at once.
		conns := int32(2 * (max(cfg.Consumers, 4) + 1))
		store, err := pgstore.Open(context.Background(), dsn, pgstore.Options{Keep: cfg.KeepDB, DDL: s.SQLSchema, MaxConns: conns})
		if err != nil {
			return nil, err
		}
		t.store = store
	}
	t.gen = rapid.Custom(func(rt *rapid.T) Case {
		w := m.Workload(cfg.MaxMessages).Draw(rt, "workload")
		p := faults.Generator(faults.Options{
			Kinds: cfg.Faults, MaxFaults: cfg.MaxFaults, Deliveries: 2*len(w) + 2, Messages: len(w),
			Dispatcher: s.NewDispatcher != nil, MaxPublishes: 2, Swarm: !cfg.NoSwarm,
			ExtraPoints: s.Points,
		}).Draw(rt, "plan")
		return Case{Workload: w, Plan: p}
	})
	return t, nil
}

// Close releases the tester's backend: the pg backend drops its schema
// (unless KeepDB).
func (t *Tester) Close() error {
	if t.store == nil {
		return nil
	}
	return t.store.Close()
}

// simulate runs one case on the tester's backend: a fresh in-memory store,
// or the pg store emptied first. With opps set it also collects the fault
// opportunities (sim.Explore).
func (t *Tester) simulate(cfg sim.Config, opps *[]sim.Opportunity) ([]histories.Event, error) {
	if t.store != nil {
		t.storeMu.Lock()
		defer t.storeMu.Unlock()
		if err := t.store.Reset(); err != nil {
			return nil, fmt.Errorf("%w: %v", sim.ErrInfrastructure, err)
		}
		cfg.Store = t.store
	}
	if opps != nil {
		events, found, err := sim.Explore(cfg)
		*opps = found
		return events, err
	}
	return sim.Run(cfg)
}

// Config returns the tester's configuration with defaults filled in.
func (t *Tester) Config() Config { return t.cfg }

// Generate returns the case of a seed. The same seed always gives the same
// case.
func (t *Tester) Generate(seed uint64) Case {
	// Example reads rapid's process-wide seed setting even when given a
	// seed, so it must not run while Shrink changes the settings.
	rapidSettings.RLock()
	defer rapidSettings.RUnlock()
	return t.gen.Example(int(seed))
}

// Execute runs a case and checks its history. An error means the run or the
// check could not be carried out (the outcome is inconclusive); the history
// recorded so far is returned with it.
func (t *Tester) Execute(c Case, seed uint64) (*histories.History, checkers.Result, error) {
	return t.execute(c, seed, false)
}

// execute is Execute; with verdictOnly, the check decides the verdict and
// does not explain a violation (see judge).
func (t *Tester) execute(c Case, seed uint64, verdictOnly bool) (*histories.History, checkers.Result, error) {
	// The handlers and the check share the model's steps: the check
	// replays the steps the handlers made.
	memo := model.NewMemo(t.model)
	var buffer []histories.Event
	if b, ok := t.buffers.Get().(*[]histories.Event); ok {
		buffer = *b
	}
	events, err := t.simulate(sim.Config{Model: memo.Guarded(), Strategy: t.strategy, Workload: c.Workload, Plan: c.Plan, Events: buffer,
		FreeRunning: t.cfg.FreeRunning, Consumers: t.cfg.Consumers}, nil)
	h := &histories.History{Header: t.header(c, seed), Events: events}
	if err != nil {
		h.Header.Verdict = histories.Inconclusive
		return h, checkers.Result{Verdict: histories.Inconclusive, Reason: err.Error()}, err
	}
	res, err := t.judge(h, memo.Shared(), verdictOnly)
	return h, res, err
}

// judge checks a run's history with the model m and records the verdict in
// its header. With verdictOnly, a violation is not explained: its anomalies
// are left out (judge it again, fully, to have them).
func (t *Tester) judge(h *histories.History, m model.Model, verdictOnly bool) (checkers.Result, error) {
	res, err := checkers.Check(h, m, checkers.Options{Downstream: t.cfg.Downstream, Timeout: t.cfg.CheckTimeout, VerdictOnly: verdictOnly})
	if err != nil {
		return checkers.Result{Verdict: histories.Inconclusive, Reason: err.Error()}, err
	}
	h.Header.Verdict, h.Header.Anomalies = res.Verdict, res.Anomalies
	return res, nil
}

// recycle takes back the history of a run that nobody keeps: the next
// run records into its buffer. h must not be used afterwards.
func (t *Tester) recycle(h *histories.History) {
	if h == nil || cap(h.Events) == 0 {
		return
	}
	events := h.Events[:0]
	h.Events = nil
	t.buffers.Put(&events)
}

func (t *Tester) header(c Case, seed uint64) histories.Header {
	return histories.Header{
		Format: histories.Format, Version: histories.Version, Tool: ToolVersion, Seed: seed,
		Model: t.model.Name(), Strategy: t.strategy.Name, Backend: t.cfg.Backend,
		Downstream: string(t.cfg.Downstream), Faults: kindNames(t.cfg.Faults), Workload: c.Workload, Plan: c.Plan,
		FreeRunning: t.cfg.FreeRunning,
	}
}

func kindNames(ks []faults.Kind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return out
}

// anomalyPriority orders anomalies from most to least specific; the first
// one a failure shows is the one shrinking preserves.
var anomalyPriority = []histories.Anomaly{
	histories.Lost, histories.Duplicate, histories.Ghost, histories.OutOfOrder, histories.Inconsistent, histories.Stuck,
}

// PrimaryAnomaly returns the most specific anomaly of a result, "" if none.
func PrimaryAnomaly(r checkers.Result) histories.Anomaly {
	for _, a := range anomalyPriority {
		if slices.Contains(r.Anomalies, a) {
			return a
		}
	}
	return ""
}

// rapidSettings guards rapid's process-wide settings: Shrink changes them
// (exclusive), Generate reads them (shared).
var rapidSettings sync.RWMutex

// Shrink minimises the failing case of seed with rapid: a smaller case is kept
// only if it fails with the same primary anomaly. It returns the smallest
// failing history found and its result. budget bounds the time spent.
func (t *Tester) Shrink(seed uint64, anomaly histories.Anomaly, budget time.Duration) (*histories.History, checkers.Result, error) {
	rapidSettings.Lock()
	defer rapidSettings.Unlock()
	if err := prepareRapid(seed, budget); err != nil {
		return nil, checkers.Result{}, err
	}
	var (
		best    *histories.History
		bestRes checkers.Result
	)
	// rapid often draws the same case again while it shrinks: remember
	// which cases fail.
	type outcome struct {
		h   *histories.History
		res checkers.Result
	}
	seen := map[string]*outcome{}
	tb := &quietTB{}
	rapid.Check(tb, func(rt *rapid.T) {
		c := t.gen.Draw(rt, "case")
		key, err := json.Marshal(c)
		if err != nil {
			rt.Fatalf("encode case: %v", err)
		}
		o, ok := seen[string(key)]
		if !ok {
			h, res, err := t.Execute(c, seed)
			o = &outcome{h, res}
			if err != nil || res.Verdict != histories.Violation || !slices.Contains(res.Anomalies, anomaly) {
				o = nil
			}
			seen[string(key)] = o
		}
		if o != nil {
			best, bestRes = o.h, o.res
			rt.Fatalf("violation: %s", anomaly)
		}
	})
	if best == nil {
		return nil, checkers.Result{}, fmt.Errorf("seed %d did not fail again with %q while shrinking: the run is not deterministic", seed, anomaly)
	}
	best, bestRes = t.reduce(best, bestRes, anomaly, seed)
	return best, bestRes, nil
}

// reduce finishes rapid's work on plain values: it tries the case without
// each workload message and without each fault, keeping every removal that
// still fails with the anomaly, until no removal does. rapid shrinks the
// random choices behind a case; removing a message from the middle of a
// workload is sometimes out of its reach.
func (t *Tester) reduce(h *histories.History, res checkers.Result, anomaly histories.Anomaly, seed uint64) (*histories.History, checkers.Result) {
	c := Case{Workload: h.Header.Workload, Plan: h.Header.Plan}
	try := func(next Case) bool {
		nh, nres, err := t.Execute(next, seed)
		if err != nil || nres.Verdict != histories.Violation || !slices.Contains(nres.Anomalies, anomaly) {
			return false
		}
		c, h, res = next, nh, nres
		return true
	}
	for progress := true; progress; {
		progress = false
		for i := len(c.Workload) - 1; i >= 0 && len(c.Workload) > 1; i-- {
			w := append(slices.Clone(c.Workload[:i]), c.Workload[i+1:]...)
			if try(Case{Workload: w.Number(), Plan: c.Plan}) {
				progress = true
			}
		}
		for i := len(c.Plan.Faults) - 1; i >= 0; i-- {
			p := c.Plan
			p.Faults = append(slices.Clone(p.Faults[:i]), p.Faults[i+1:]...)
			if try(Case{Workload: c.Workload, Plan: p}) {
				progress = true
			}
		}
	}
	return h, res
}

// prepareRapid points rapid's process-wide settings at one seed: one check,
// no fail files, the given shrink budget.
func prepareRapid(seed uint64, budget time.Duration) error {
	if flag.Lookup("test.short") == nil {
		testing.Init()
	}
	if !flag.Parsed() {
		if err := flag.CommandLine.Parse(nil); err != nil {
			return err
		}
	}
	checks := "1"
	if testing.Short() {
		checks = "5" // rapid divides the checks by 5 in -short mode
	}
	settings := [][2]string{
		{"rapid.seed", fmt.Sprint(seed)}, {"rapid.checks", checks}, {"rapid.nofailfile", "true"},
		{"rapid.shrinktime", budget.String()}, {"rapid.v", "false"}, {"rapid.failfile", ""},
	}
	for _, s := range settings {
		if err := flag.Set(s[0], s[1]); err != nil {
			return fmt.Errorf("configure rapid %s: %w", s[0], err)
		}
	}
	return nil
}

// quietTB receives rapid's reports during shrinking; the outcome is read
// from the property's own variables.
type quietTB struct{ failed bool }

func (*quietTB) Helper()                  {}
func (*quietTB) Name() string             { return "oncecheck" }
func (*quietTB) Logf(string, ...any)      {}
func (*quietTB) Log(...any)               {}
func (*quietTB) Skipf(string, ...any)     {}
func (*quietTB) Skip(...any)              {}
func (*quietTB) SkipNow()                 {}
func (tb *quietTB) Errorf(string, ...any) { tb.failed = true }
func (tb *quietTB) Error(...any)          { tb.failed = true }
func (tb *quietTB) Fatalf(string, ...any) { tb.failed = true }
func (tb *quietTB) Fatal(...any)          { tb.failed = true }
func (tb *quietTB) FailNow()              { tb.failed = true }
func (tb *quietTB) Fail()                 { tb.failed = true }
func (tb *quietTB) Failed() bool          { return tb.failed }

// Check re-checks a saved history offline. The model is the one its header
// names; downstream overrides the header's policy when not empty.
func Check(h *histories.History, downstream checkers.Downstream, timeout time.Duration) (checkers.Result, error) {
	return CheckStream(h.Header, h, downstream, timeout)
}

// CheckFile is Check on a history file, read as a stream: the file is not
// held in memory, so a history of millions of events is checked in the
// memory its check needs (see histories.File).
func CheckFile(f *histories.File, downstream checkers.Downstream, timeout time.Duration) (checkers.Result, error) {
	return CheckStream(f.Header, f, downstream, timeout)
}

// CheckStream is Check on a history given as its header and its events.
func CheckStream(hd histories.Header, src histories.Stream, downstream checkers.Downstream, timeout time.Duration) (checkers.Result, error) {
	m, err := model.Lookup(hd.Model)
	if err != nil {
		return checkers.Result{}, fmt.Errorf("%w: %v", checkers.ErrMalformed, err)
	}
	if downstream == "" {
		downstream = checkers.Downstream(hd.Downstream)
	}
	if hd.Verdict == histories.Inconclusive {
		drained := errors.New("drained")
		err := src.Each(func(ev *histories.Event) error {
			if ev.Kind == histories.Observe || ev.Kind == histories.Undrained {
				return drained
			}
			return nil
		})
		switch {
		case err == nil:
			// Saved by a run cut short (its backend failed): nothing to judge.
			return checkers.Result{Verdict: histories.Inconclusive,
				Reason: "the run that saved this history was cut short (its backend failed) before the final states were read"}, nil
		case !errors.Is(err, drained):
			var se *histories.SyntaxError
			if errors.As(err, &se) {
				return checkers.Result{}, fmt.Errorf("%w: %w", checkers.ErrMalformed, err)
			}
			return checkers.Result{}, err
		}
	}
	return checkers.CheckStream(src, m, checkers.Options{Downstream: downstream, Timeout: timeout})
}

// Replay re-runs the plan of a saved history, on strategy (the history's own
// when empty), and checks the new history. It uses the history's backend;
// see ReplayOn to choose another.
func Replay(h *histories.History, strategy string) (*histories.History, checkers.Result, error) {
	return ReplayOn(h, strategy, "")
}

// ReplayOn is Replay on a given backend ("" for the history's own); the pg
// backend takes its DSN from $ONCECHECK_PG. A free-running history is
// replayed free-running: the same plan, but its own interleaving.
func ReplayOn(h *histories.History, strategy, backend string) (*histories.History, checkers.Result, error) {
	if strategy == "" {
		strategy = h.Header.Strategy
	}
	if backend == "" {
		backend = h.Header.Backend
	}
	var kinds []faults.Kind
	for _, k := range h.Header.Faults {
		kinds = append(kinds, faults.Kind(k))
	}
	t, err := New(Config{
		Model: h.Header.Model, Strategy: strategy, Backend: backend, Faults: kinds,
		Downstream: checkers.Downstream(h.Header.Downstream), FreeRunning: h.Header.FreeRunning,
	})
	if err != nil {
		return nil, checkers.Result{}, err
	}
	defer t.Close()
	return t.Execute(Case{Workload: h.Header.Workload, Plan: h.Header.Plan}, h.Header.Seed)
}
