// Package campaign is oncecheck's engine: it generates cases (a workload
// and a fault plan) from seeds with rapid, executes them in the simulation
// on a backend's store, checks each history, searches many seeds for a
// violation, shrinks the first one found and saves it; it also runs the
// matrix of strategies by fault kinds against its expectation, and the
// exhaustive mode. Verify and the command line are built on it.
//
// The pipeline: Generate (workload + plan) -> Execute (simulation + check)
// -> Search (many runs, shrink the first failure, save it).
package campaign

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/memstore"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/sim"
)

// ToolVersion is written into every history.
const ToolVersion = "0.1.0"

// Case is one generated test case: a workload and a fault plan.
type Case struct {
	Workload model.Workload
	Plan     faults.Plan
}

// Config selects what to test and how.
type Config struct {
	// Model is the reference business logic (default: model.Orders).
	Model model.Model
	// Strategy is the adapter under test (required: a name and a
	// NewHandler).
	Strategy adapters.Strategy
	// Backend is where the runs' stores come from (default: the in-memory
	// backend, memstore.Backend).
	Backend adapters.Backend
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
	// Consumers is the number of consumers of a free-running run (default
	// 4, at most 16).
	Consumers int
	// ReadsNotPreempted schedules as histories of format 1.1 were run:
	// reads are not scheduling points (sim.Config.ReadsPreempt). Only a
	// replay of such a history wants it: a task preempted between a read
	// and the write that depends on it is how lost updates happen.
	ReadsNotPreempted bool
	// Isolation is the transactions' isolation level, unless a handler
	// asks for its own (default adapters.ReadCommitted, PostgreSQL's and
	// pgx's default): docs/design.md, "Isolation".
	Isolation adapters.Isolation
	// LockTimeout, if set, bounds how long a write waits for a row lock
	// (PostgreSQL's lock_timeout) before it fails with a conflict; by
	// default it waits until the holder ends.
	LockTimeout time.Duration
	// Format12 runs as histories of format 1.2 and before ran: at
	// repeatable read, a write that meets a row lock failing at once
	// (adapters.StoreOptions.LockConflicts), a lease that expires as its
	// copy is delivered, and no observation of a stuck run
	// (sim.Config.Format12). Only a replay of such a history wants it.
	Format12 bool
	// Cache is the backend of the handlers' Env.Cache (default: the
	// simulation's in-memory cache; rediscache.Backend for a real Redis).
	Cache adapters.CacheBackend
	// MaxDelay bounds how late a late fault's copy arrives (default
	// faults.DefaultMaxDelay).
	MaxDelay time.Duration
	// Broker is the broker the consumers read from: sim.BrokerQueue (""),
	// per-message acks and requeues, or sim.BrokerLog, a partitioned log
	// with offset commits and a consumer group (sim.Config.Broker). The
	// log broker runs neither FreeRunning nor Format12.
	Broker string
}

func (c *Config) defaults() {
	if c.Model == nil {
		c.Model = model.Orders{}
	}
	if c.Backend == nil {
		c.Backend = memstore.Backend{}
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
	if c.Format12 {
		c.Isolation = adapters.RepeatableRead
	}
}

// ConfigError says why a configuration cannot run. Field names the field
// of Config (or of the options) at fault, so that a command line can name
// its own flag instead.
type ConfigError struct {
	// Field is the field at fault ("MaxMessages", "Strategy", ...).
	Field string
	// Problem says what is wrong with it, in words that do not name it.
	Problem string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Problem }

func configErrorf(field, format string, args ...any) error {
	return &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Tester runs cases of one configuration. Its methods are safe for
// concurrent use.
type Tester struct {
	cfg    Config
	model  model.Model
	stores storePool
	caches cachePool
	// id prefixes the RunID of every run (determinism.go); runCount
	// numbers them.
	id       string
	runCount atomic.Uint64
	gen      *rapid.Generator[Case]
	buffers  sync.Pool // of *[]histories.Event: buffers of dropped histories
}

// New validates the configuration and returns a Tester. A configuration
// that cannot run is a *ConfigError; a strategy that makes no sense with the
// model, an *adapters.UnsupportedError.
func New(cfg Config) (*Tester, error) {
	cfg.defaults()
	m, s := cfg.Model, cfg.Strategy
	switch {
	case s.Name == "" || s.NewHandler == nil:
		return nil, configErrorf("Strategy", "a strategy needs a name and a NewHandler")
	case cfg.MaxMessages < 1:
		return nil, configErrorf("MaxMessages", "must be at least 1, not %d", cfg.MaxMessages)
	case cfg.MaxFaults < 0:
		return nil, configErrorf("MaxFaults", "must be at least 0, not %d", cfg.MaxFaults)
	case cfg.Consumers < 0 || cfg.Consumers > 16:
		return nil, configErrorf("Consumers", "must be between 1 and 16, not %d", cfg.Consumers)
	case cfg.Consumers != 0 && !cfg.FreeRunning:
		return nil, configErrorf("Consumers", "sets the consumers of a free-running run only")
	case cfg.MaxDelay < 0:
		return nil, configErrorf("MaxDelay", "must not be negative, not %s", cfg.MaxDelay)
	}
	broker, err := sim.ParseBroker(cfg.Broker)
	switch {
	case err != nil:
		return nil, configErrorf("Broker", "%v", err)
	case broker == sim.BrokerLog && cfg.FreeRunning:
		return nil, configErrorf("Broker", "the log broker runs scheduled runs only, not free-running ones")
	case broker == sim.BrokerLog && cfg.Format12:
		return nil, configErrorf("Broker", "the log broker did not exist in format 1.2")
	}
	cfg.Broker = broker
	if _, err := checkers.ParseDownstream(string(cfg.Downstream)); err != nil {
		return nil, configErrorf("Downstream", "%v", err)
	}
	level, err := adapters.ParseIsolation(string(cfg.Isolation))
	if err != nil {
		return nil, configErrorf("Isolation", "%v", err)
	}
	cfg.Isolation = level
	if cfg.LockTimeout < 0 {
		return nil, configErrorf("LockTimeout", "must not be negative, not %s", cfg.LockTimeout)
	}
	if err := s.Check(m); err != nil {
		return nil, fmt.Errorf("strategy %s does not apply to model %s: %w", s.Name, m.Name(), err)
	}
	opts := adapters.StoreOptions{DDL: s.SQLSchema, Processes: max(cfg.Consumers, 4),
		Isolation: cfg.Isolation, LockWait: cfg.LockTimeout, LockConflicts: cfg.Format12}
	t := &Tester{cfg: cfg, model: m, stores: storePool{backend: cfg.Backend, opts: opts}, id: newTesterID()}
	// The first store is opened now, so that a backend that cannot serve
	// says so before the campaign.
	first, err := t.stores.take()
	if err != nil {
		var unsupported *adapters.UnsupportedError
		if errors.As(err, &unsupported) {
			return nil, fmt.Errorf("strategy %s on the %s backend: %w", s.Name, cfg.Backend.Name(), err)
		}
		return nil, fmt.Errorf("open the %s backend: %w", cfg.Backend.Name(), err)
	}
	t.stores.put(first)
	if cfg.Cache != nil && cfg.Cache.Name() != "mem" {
		t.caches.backend = cfg.Cache
		c, err := t.caches.take()
		if err != nil {
			_ = t.stores.close()
			return nil, err
		}
		t.caches.put(c)
	}
	t.gen = rapid.Custom(func(rt *rapid.T) Case {
		w := m.Workload(cfg.MaxMessages).Draw(rt, "workload")
		p := faults.Generator(faults.Options{
			Kinds: cfg.Faults, MaxFaults: cfg.MaxFaults, Deliveries: 2*len(w) + 2, Messages: len(w),
			Dispatcher: s.NewDispatcher != nil, MaxPublishes: 2, Swarm: !cfg.NoSwarm,
			ExtraPoints: s.Points, Windows: s.Windows, MaxDelay: cfg.MaxDelay,
		}).Draw(rt, "plan")
		return Case{Workload: w, Plan: p}
	})
	return t, nil
}

// storePool holds the stores of a tester's backend that no run is using:
// a run takes one (opening a new one when none is free) and puts it back.
type storePool struct {
	backend adapters.Backend
	opts    adapters.StoreOptions
	mu      sync.Mutex
	free    []adapters.Store
	all     []adapters.Store
}

func (p *storePool) take() (adapters.Store, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free = p.free[:n-1]
		return s, nil
	}
	s, err := p.backend.Open(p.opts)
	if err != nil {
		return nil, err
	}
	p.all = append(p.all, s)
	return s, nil
}

func (p *storePool) put(s adapters.Store) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, s)
}

func (p *storePool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, s := range p.all {
		errs = append(errs, s.Close())
	}
	p.all, p.free = nil, nil
	return errors.Join(errs...)
}

// Close releases the tester's stores (the pg backend drops their schemas,
// unless its Keep is set).
func (t *Tester) Close() error { return errors.Join(t.stores.close(), t.caches.close()) }

// simulate runs one case on a store of the tester's backend, emptied
// first. With opps set it also collects the fault opportunities
// (sim.Explore).
func (t *Tester) simulate(cfg sim.Config, opps *[]sim.Opportunity) ([]histories.Event, error) {
	store, err := t.stores.take()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", sim.ErrInfrastructure, err)
	}
	defer t.stores.put(store)
	if err := store.Reset(); err != nil {
		return nil, fmt.Errorf("%w: %v", sim.ErrInfrastructure, err)
	}
	cfg.Store = store
	cache, err := t.caches.take()
	if err != nil {
		return nil, err
	}
	defer t.caches.put(cache)
	cfg.Cache = cache
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
func (t *Tester) Generate(seed uint64) Case { return example(t.gen, seed) }

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
	events, err := t.simulate(sim.Config{Model: memo.Guarded(), Strategy: t.cfg.Strategy, Workload: c.Workload, Plan: c.Plan, Events: buffer,
		FreeRunning: t.cfg.FreeRunning, Consumers: t.cfg.Consumers, ReadsPreempt: !t.cfg.ReadsNotPreempted,
		Format12: t.cfg.Format12, RunID: t.runID(seed), Broker: t.cfg.Broker}, nil)
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
	h := histories.Header{
		Format: histories.Format, Version: histories.Version, Tool: ToolVersion, Seed: seed,
		Model: t.model.Name(), Strategy: t.cfg.Strategy.Name, Backend: t.cfg.Backend.Name(),
		Downstream: string(t.cfg.Downstream), Faults: slices.Clone(t.cfg.Faults), Workload: c.Workload, Plan: c.Plan,
		FreeRunning: t.cfg.FreeRunning, ReadsPreempt: !t.cfg.ReadsNotPreempted, Isolation: string(t.cfg.Isolation),
		Cache: cacheName(t.cfg.Cache),
	}
	if t.cfg.Broker != sim.BrokerQueue {
		h.Broker = t.cfg.Broker // absent means the queue: older histories are unchanged
	}
	if t.cfg.Format12 {
		// It ran as format 1.2 did, and says so: a replay must too.
		h.Version, h.Isolation = "1.2", ""
	}
	return h
}

// Shrink minimises the failing case of seed with rapid, then by removing
// messages and faults one at a time: a smaller case is kept only if it
// still shows anomaly (the original's primary one; the smaller case may show
// others besides). It returns the smallest failing history found and its
// result. budget bounds rapid's part.
func (t *Tester) Shrink(seed uint64, anomaly histories.Anomaly, budget time.Duration) (*histories.History, checkers.Result, error) {
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
	err := shrinkFrom(seed, budget, func(rt *rapid.T) {
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
	if err != nil {
		return nil, checkers.Result{}, err
	}
	if best == nil {
		return nil, checkers.Result{}, fmt.Errorf("seed %d did not fail again with %q while shrinking: the run is not deterministic", seed, anomaly)
	}
	best, bestRes = t.reduce(best, bestRes, anomaly, seed)
	return best, bestRes, nil
}

// retarget returns plan p for the run of history h without the logical
// message key (the index-th of the workload): each fault pinned to a
// consumer delivery moves down by the deliveries of key before it, so that
// it strikes the same delivery (or, if it struck one of key's, the next
// one); a re-issue names the message by its new index, and one of key
// itself is dropped. ok is false when nothing moves.
func retarget(p faults.Plan, h *histories.History, key string, index int) (faults.Plan, bool) {
	var removed []int // delivery indexes of key's copies, increasing
	for _, ev := range h.Events {
		if ev.Kind == histories.Deliver && ev.Message != nil && ev.Message.Key == key {
			removed = append(removed, ev.Attempt-1)
		}
	}
	out := p
	out.Faults = nil
	changed := false
	for _, f := range p.Faults {
		if f.Kind == faults.Concurrent || f.Process == faults.Dispatcher {
			out.Faults = append(out.Faults, f) // boundaries and passes, not deliveries
			continue
		}
		before, _ := slices.BinarySearch(removed, f.At)
		if f.Kind == faults.Reissue {
			switch {
			case f.Index == index:
				changed = true
				continue
			case f.Index > index:
				f.Index--
				changed = true
			}
		}
		if before > 0 {
			f.At -= before
			changed = true
		}
		out.Faults = append(out.Faults, f)
	}
	return out, changed
}

// reduce finishes rapid's work on plain values: it tries the case without
// each workload message and without each fault, then without two
// neighbouring messages, keeping every removal that still fails with the
// anomaly, until no removal does. rapid shrinks the
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
			w := append(slices.Clone(c.Workload[:i]), c.Workload[i+1:]...).Number()
			// The faults pinned to later deliveries follow them; those
			// pinned to the dropped message's move to the next delivery.
			// If that does not fail, the faults stay where they were.
			moved, ok := retarget(c.Plan, h, c.Workload[i].Key, i)
			if ok && try(Case{Workload: w, Plan: moved}) || try(Case{Workload: w, Plan: c.Plan}) {
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
		if progress {
			continue
		}
		// Two neighbours at once: with two consumers taking turns, a
		// single removal hands the later copies to the other consumer,
		// and the race that failed may need them where they were.
		for i := len(c.Workload) - 2; i >= 0 && len(c.Workload) > 2; i-- {
			w := append(slices.Clone(c.Workload[:i]), c.Workload[i+2:]...).Number()
			if try(Case{Workload: w, Plan: c.Plan}) {
				progress = true
				break
			}
		}
	}
	return h, res
}
