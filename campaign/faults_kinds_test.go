package campaign

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

// TestEachFaultKindBreaksOneStrategyAndNotAnother shows, for each fault
// kind alone, a strategy it breaks (with the anomaly) and one that survives
// 500 runs of it, on the orders model (profiles for reorder: orders accepts
// any order).
func TestEachFaultKindBreaksOneStrategyAndNotAnother(t *testing.T) {
	cases := []struct {
		kind            faults.Kind
		model           string
		breaks, anomaly string
		survives        string
	}{
		{faults.Crash, "orders", "dedup", "lost", "outbox"},
		{faults.Redelivery, "orders", "naive", "duplicate", "dedup"},
		{faults.Reorder, "profiles", "naive", "out-of-order", "version"},
		{faults.PublishFailure, "orders", "dedup", "lost", "outbox"},
		{faults.Reissue, "orders", "outbox", "duplicate", "reservation"},
		{faults.Concurrent, "orders", "dedup-mark-first", "lost", "dedup"},
	}
	for _, c := range cases {
		t.Run(string(c.kind), func(t *testing.T) {
			t.Parallel()
			search := func(strategy string) Report {
				tester, err := New(Config{Model: mdl(c.model), Strategy: strat(strategy), Faults: []faults.Kind{c.kind}})
				require.NoError(t, err)
				rep, err := tester.Search(context.Background(), SearchOptions{Runs: 500, Seed: 1, Out: t.TempDir(), NoShrink: true})
				require.NoError(t, err)
				return rep
			}
			broken := search(c.breaks)
			require.Equal(t, histories.Violation, broken.Verdict, "%s breaks %s", c.kind, c.breaks)
			require.Contains(t, broken.Result.Anomalies, histories.Anomaly(c.anomaly))
			require.NotZero(t, broken.Injected[c.kind])

			kept := search(c.survives)
			require.Equal(t, histories.Pass, kept.Verdict, "%s survives %s: %v", c.survives, c.kind, kept.Result.Findings)
			require.Equal(t, 500, kept.Runs)
			require.NotZero(t, kept.Injected[c.kind], "the fault took effect in the passing runs")
		})
	}
}

// TestEveryStrategyIsDeterministic runs every strategy under every fault
// kind with the determinism self-check: each case twice, same history.
func TestEveryStrategyIsDeterministic(t *testing.T) {
	for _, name := range builtin.StrategyNames() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tester, err := New(Config{Strategy: strat(name)})
			require.NoError(t, err)
			rep, err := tester.Search(context.Background(), SearchOptions{Runs: 150, Seed: 7, Out: t.TempDir(), NoShrink: true, CheckDeterminism: true})
			require.NoError(t, err)
			require.NotEqual(t, histories.Inconclusive, rep.Verdict, rep.Reason)
		})
	}
}
