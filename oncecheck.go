// Package oncecheck proves or refutes a message handler's delivery
// guarantee.
//
// It generates workloads and fault plans with rapid, runs them against a
// handler in a deterministic simulation, records a history, and checks with
// porcupine that the observable side effects (durable state plus published
// messages) equal those of some execution in which each logical message was
// processed exactly once. A failure comes back as a shrunk, saved,
// replayable history with an explanation.
//
// This package is what a library user needs: Verify in a test, and Check
// and Replay of a saved history. The engine behind them is package
// campaign; the command line is package cli (cmd/oncecheck runs it).
package oncecheck

import (
	"errors"
	"fmt"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
)

// CheckOptions configure a check of a saved history.
type CheckOptions struct {
	// Catalogue resolves the model the history names (default:
	// catalogue.Builtin(); add a model of one's own with WithModels).
	Catalogue catalogue.Catalogue
	// Downstream overrides the history's output-copy policy when set.
	Downstream checkers.Downstream
	// Timeout bounds the check (default 30s); expiry is inconclusive.
	Timeout time.Duration
	// OutputOrder says whether the order of an aggregate's outputs is part
	// of the property (default: where the model says its streams are
	// ordered; checkers.OutputOrderChecked, checkers.OutputOrderIgnored).
	OutputOrder checkers.OutputOrder
}

// Check re-checks a saved history offline, with the model its header
// names.
func Check(h *histories.History, o CheckOptions) (checkers.Result, error) {
	return CheckStream(h.Header, h, o)
}

// CheckFile is Check on a history file, read as a stream: the file is not
// held in memory, so a history of millions of events is checked in the
// memory its check needs (see histories.File).
func CheckFile(f *histories.File, o CheckOptions) (checkers.Result, error) {
	return CheckStream(f.Header, f, o)
}

// CheckStream is Check on a history given as its header and its events:
// events that never were a file can be checked too.
func CheckStream(hd histories.Header, src histories.Stream, o CheckOptions) (checkers.Result, error) {
	m, err := orBuiltin(o.Catalogue).Model(hd.Model)
	if err != nil {
		return checkers.Result{}, fmt.Errorf("%w: %w", checkers.ErrMalformed, err)
	}
	downstream := o.Downstream
	if downstream == "" {
		downstream = checkers.Downstream(hd.Downstream)
	}
	if hd.Verdict == histories.Inconclusive {
		complete, err := observedToTheEnd(src)
		if err != nil {
			var se *histories.SyntaxError
			if errors.As(err, &se) {
				return checkers.Result{}, fmt.Errorf("%w: %w", checkers.ErrMalformed, err)
			}
			return checkers.Result{}, err
		}
		if !complete {
			// Saved by a run cut short (its backend failed): nothing to judge.
			return checkers.Result{Verdict: histories.Inconclusive,
				Reason: "the run that saved this history was cut short (its backend failed) before the final states were read"}, nil
		}
	}
	return checkers.CheckStream(src, m, checkers.Options{Downstream: downstream, Timeout: o.Timeout, OutputOrder: o.OutputOrder})
}

// observedToTheEnd reports whether a history ran to its end: the run was
// declared stuck, or the final state of every aggregate a message targets
// was read. A run cut short by its backend may stop anywhere, halfway
// through reading the final states too.
func observedToTheEnd(src histories.Stream) (bool, error) {
	targeted, observed := map[string]bool{}, map[string]bool{}
	stuck := false
	err := src.Each(func(ev *histories.Event) error {
		switch {
		case ev.Kind == histories.Send && ev.Message != nil:
			targeted[ev.Message.Aggregate] = true
		case ev.Kind == histories.Observe:
			observed[ev.Aggregate] = true
		case ev.Kind == histories.Undrained:
			stuck = true
		}
		return nil
	})
	if err != nil || stuck {
		return stuck, err
	}
	if len(observed) == 0 {
		return false, nil
	}
	for agg := range targeted {
		if !observed[agg] {
			return false, nil
		}
	}
	return true, nil
}

// ReplayOptions configure a replay of a saved history.
type ReplayOptions struct {
	// Catalogue resolves the model, strategy and backend the replay runs
	// on (default: catalogue.Builtin(), which has the in-memory backend
	// only: add pgstore.Backend to replay on PostgreSQL).
	Catalogue catalogue.Catalogue
	// Strategy runs the plan on another strategy (default: the history's
	// own).
	Strategy string
	// Backend runs the plan on another backend (default: the history's
	// own).
	Backend string
	// Isolation runs the plan at another isolation level (default: the
	// history's own).
	Isolation adapters.Isolation
	// Cache runs the handlers' Env.Cache on another cache backend, "mem"
	// or "redis" (default: the history's own; add rediscache.Backend to
	// the catalogue for Redis).
	Cache string
	// Broker runs the plan on another broker, "queue" or "log" (default:
	// the history's own).
	Broker string
}

// Replay re-runs the workload and plan of a saved history and checks the new
// history. A free-running history is replayed free-running: the same plan,
// but its own interleaving. A name the catalogue does not know is a
// *catalogue.UnknownError.
func Replay(h *histories.History, o ReplayOptions) (*histories.History, checkers.Result, error) {
	cat := orBuiltin(o.Catalogue)
	if o.Strategy == "" {
		o.Strategy = h.Header.Strategy
	}
	if o.Backend == "" {
		o.Backend = h.Header.Backend
	}
	m, err := cat.Model(h.Header.Model)
	if err != nil {
		return nil, checkers.Result{}, err
	}
	s, err := cat.Strategy(o.Strategy)
	if err != nil {
		return nil, checkers.Result{}, err
	}
	b, err := cat.Backend(o.Backend)
	if err != nil {
		return nil, checkers.Result{}, err
	}
	if o.Cache == "" {
		o.Cache = h.Header.Cache
	}
	var cache adapters.CacheBackend
	if o.Cache != "" && o.Cache != "mem" {
		if cache, err = cat.Cache(o.Cache); err != nil {
			return nil, checkers.Result{}, err
		}
	}
	cfg := campaign.Config{
		Model: m, Strategy: s, Backend: b, Faults: h.Header.Faults, Cache: cache,
		Downstream: checkers.Downstream(h.Header.Downstream), FreeRunning: h.Header.FreeRunning,
		ReadsNotPreempted: !h.Header.ReadsPreempt,
		Isolation:         adapters.Isolation(h.Header.IsolationLevel()),
		Format12:          h.Header.Before13(),
		Broker:            h.Header.Broker,
	}
	if o.Broker != "" {
		cfg.Broker = o.Broker
	}
	if o.Isolation != "" {
		cfg.Isolation, cfg.Format12 = o.Isolation, false
	}
	t, err := campaign.New(cfg)
	if err != nil {
		return nil, checkers.Result{}, err
	}
	defer t.Close()
	return t.Execute(campaign.Case{Workload: h.Header.Workload, Plan: h.Header.Plan}, h.Header.Seed)
}

// orBuiltin returns c, or the built-in catalogue when c is empty.
func orBuiltin(c catalogue.Catalogue) catalogue.Catalogue {
	if len(c.Models) == 0 && len(c.Strategies) == 0 && len(c.Backends) == 0 {
		return catalogue.Builtin()
	}
	return c
}
