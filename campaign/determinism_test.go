package campaign

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// leakySeen is a dedup set kept where no adapter may keep one: it survives
// from one run into the next.
type leakySeen struct {
	mu   sync.Mutex
	seen map[string]bool
}

// leakyDedup is the dedup of a middleware that keeps its set in a
// package-level variable (here, one shared by its handlers).
type leakyDedup struct {
	strategykit.StateObserver
	set *leakySeen
}

func (h leakyDedup) Handle(env adapters.Env, msg model.Message) error {
	h.set.mu.Lock()
	seen := h.set.seen[msg.ID]
	h.set.seen[msg.ID] = true
	h.set.mu.Unlock()
	if seen {
		return env.Ack()
	}
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	outs, err := strategykit.Apply(tx, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if err := env.Publish(strategykit.DerivedMessages(outs, msg)...); err != nil {
		return err
	}
	return env.Ack()
}

// TestStateCarriedOverBetweenRunsIsNotDeterministic holds that an adapter
// whose dedup set outlives its runs is reported as not deterministic, with
// the reason, and not with a counterexample that blames a message.
func TestStateCarriedOverBetweenRunsIsNotDeterministic(t *testing.T) {
	set := &leakySeen{seen: map[string]bool{}}
	s := adapters.Strategy{Name: "leaky", NewHandler: func() adapters.Handler { return leakyDedup{set: set} }}
	tester, err := New(Config{Strategy: s, Faults: []faults.Kind{faults.Redelivery}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tester.Close() })
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 50, Seed: 1, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Inconclusive, rep.Verdict)
	require.Nil(t, rep.Minimal, "no counterexample")
	require.Contains(t, rep.NotDeterministic, "state carried over from an earlier run")
	require.Contains(t, rep.Reason, "not deterministic")
}

// TestAGoroutinePerMessageIsCounted holds that the goroutines an adapter
// leaves behind are counted and reported, by run, with the verdict.
func TestAGoroutinePerMessageIsCounted(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s := adapters.Strategy{Name: "goroutine-per-message", NewHandler: func() adapters.Handler {
		return spawning{release: release}
	}}
	tester, err := New(Config{Strategy: s, Faults: []faults.Kind{faults.Reorder}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tester.Close() })
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 20, Seed: 1, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Pass, rep.Verdict, "%v", rep.Result.Findings)
	deliveries := 0
	for seed := uint64(1); seed <= 20; seed++ {
		deliveries += len(tester.Generate(seed).Workload)
	}
	// The first case runs twice (the determinism probe).
	require.Equal(t, deliveries+len(tester.Generate(1).Workload), rep.Goroutines)
	require.Equal(t, 21, rep.GoroutineRuns)
	require.Contains(t, rep.LeftoverText, "left")
}

// spawning is the naive handler, with a "cleanup" goroutine per delivery
// that outlives it.
type spawning struct {
	strategykit.StateObserver
	release chan struct{}
}

func (h spawning) Handle(env adapters.Env, msg model.Message) error {
	go func() {
		select {
		case <-h.release:
		case <-time.After(time.Hour):
		}
	}()
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	outs, err := strategykit.Apply(tx, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if err := env.Publish(strategykit.DerivedMessages(outs, msg)...); err != nil {
		return err
	}
	return env.Ack()
}
