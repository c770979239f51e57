package redissetnx_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/redissetnx"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

var oneAdd = model.Workload{strategytest.AddItem("o1", "a")}

// TestRedisSetNXSurvivesRedeliveryReorderingAndReissues holds that
// redis-setnx passes campaigns of redeliveries, reorders and re-issues.
func TestRedisSetNXSurvivesRedeliveryReorderingAndReissues(t *testing.T) {
	strategytest.Survives(t, redissetnx.Strategy(), model.Orders{}, faults.Redelivery, faults.Reorder, faults.Reissue)
}

// TestRedisSetNXSkipsWorkThatWasNeverDone holds that a key set before a
// crash or a failed publish makes the redelivery skip the work or its
// outputs: lost. On Redis as in memory.
func TestRedisSetNXSkipsWorkThatWasNeverDone(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
		word  string
	}{
		{"crash after the SET", strategytest.CrashAt(0, faults.AfterCache, 0), "had no effect at all"},
		{"crash after the commit", strategytest.Crash(0, faults.AfterCommit), "never published"},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}, "never published"},
	}
	strategytest.EachCache(t, func(t *testing.T, cache adapters.CacheBackend) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				require.Equal(t, string(histories.Lost), strategytest.Expected(t, redissetnx.Name, model.Orders{}, c.fault.Kind))
				res := strategytest.ExecuteOn(t, cache, redissetnx.Strategy(), model.Orders{}, oneAdd, faults.Plan{Faults: []faults.Fault{c.fault}})
				strategytest.Violates(t, res, histories.Lost, c.word)
			})
		}
	})
}

// TestRedisSetNXLetsACopyThroughAfterItsTTL holds that the key expires: a
// copy that comes back just past the time to live is applied again, one
// just before it is skipped. On Redis as in memory.
func TestRedisSetNXLetsACopyThroughAfterItsTTL(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, redissetnx.Name, model.Orders{}, faults.Late))
	strategytest.EachCache(t, func(t *testing.T, cache adapters.CacheBackend) {
		for _, variant := range []string{faults.LateCopy, faults.LateReissue} {
			past := strategytest.Late(0, variant, redissetnx.TTL+faults.LateMargin)
			res := strategytest.ExecuteOn(t, cache, redissetnx.Strategy(), model.Orders{}, oneAdd, faults.Plan{Faults: []faults.Fault{past}})
			strategytest.Violates(t, res, histories.Duplicate, "applied twice")
			before := strategytest.Late(0, variant, redissetnx.TTL-faults.LateMargin)
			strategytest.Passes(t, strategytest.ExecuteOn(t, cache, redissetnx.Strategy(), model.Orders{}, oneAdd, faults.Plan{Faults: []faults.Fault{before}}))
		}
	})
}

// TestATTLShorterThanTheRedeliveryDelayIsFoundAndShrunk searches late faults
// alone: a time to live shorter than the longest delay is found as
// duplicate and shrunk to one message and one fault; a time to live longer
// than any delay the plans can produce (late copies of late copies
// included) passes.
func TestATTLShorterThanTheRedeliveryDelayIsFoundAndShrunk(t *testing.T) {
	search := func(s adapters.Strategy, runs int) campaign.Report {
		tester, err := campaign.New(campaign.Config{Strategy: s, Model: model.Orders{}, Faults: []faults.Kind{faults.Late}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = tester.Close() })
		rep, err := tester.Search(context.Background(), campaign.SearchOptions{Runs: runs, Seed: 1, Out: t.TempDir(), ShrinkTime: 5 * time.Second})
		require.NoError(t, err)
		return rep
	}
	rep := search(redissetnx.Strategy(), 200)
	require.Equal(t, histories.Violation, rep.Verdict)
	require.Equal(t, histories.Duplicate, rep.Result.Primary())
	require.Len(t, rep.Minimal.Header.Workload, 1)
	require.Len(t, rep.Minimal.Header.Plan.Faults, 1)
	f := rep.Minimal.Header.Plan.Faults[0]
	require.Equal(t, faults.Late, f.Kind)
	require.Greater(t, time.Duration(f.Delay), redissetnx.TTL)

	// A late copy can itself come back late: with 3 faults at most, the
	// last copy of a message can arrive 3 maximal delays after the first.
	long := redissetnx.WithTTL(3*faults.DefaultMaxDelay + time.Hour)
	rep = search(long, 200)
	require.Equal(t, histories.Pass, rep.Verdict, "%v", rep.Result.Findings)
	require.NotZero(t, rep.Injected[faults.Late])
}
