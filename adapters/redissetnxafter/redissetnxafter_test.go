package redissetnxafter_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/redissetnxafter"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

var oneAdd = model.Workload{strategytest.AddItem("o1", "a")}

// TestRedisSetNXAfterSurvivesReorderingReissuesAndCompetition holds that
// redis-setnx-after passes campaigns of reorders, re-issues and competing
// consumers.
func TestRedisSetNXAfterSurvivesReorderingReissuesAndCompetition(t *testing.T) {
	strategytest.Survives(t, redissetnxafter.Strategy(), model.Orders{}, faults.Reorder, faults.Reissue, faults.Concurrent)
}

// TestRedisSetNXAfterLetsTwoConsumersPassTheGet holds that a lease that
// expires while the first attempt works hands the copy to a second
// consumer, which finds no key either (it is set after the work): both
// apply it, duplicate.
func TestRedisSetNXAfterLetsTwoConsumersPassTheGet(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, redissetnxafter.Name, model.Orders{}, faults.Redelivery))
	results := strategytest.LeaseSteps(t, campaign.Config{Strategy: redissetnxafter.Strategy()}, strategytest.AddItem("o1", "a"))
	require.True(t, strategytest.Shows(results, histories.Duplicate), "%v", results)
}

// TestRedisSetNXAfterAppliesTheWorkAgainBeforeTheKey holds that a crash or
// a failed publish between the commit and the SET applies the message
// again: duplicate. On Redis as in memory.
func TestRedisSetNXAfterAppliesTheWorkAgainBeforeTheKey(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"crash after the commit", strategytest.Crash(0, faults.AfterCommit)},
		// Cache command #1 is the GET, #2 the SET.
		{"crash before the SET", strategytest.CrashAt(0, faults.BeforeCache, 1)},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}},
	}
	strategytest.EachCache(t, func(t *testing.T, cache adapters.CacheBackend) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, redissetnxafter.Name, model.Orders{}, c.fault.Kind))
				res := strategytest.ExecuteOn(t, cache, redissetnxafter.Strategy(), model.Orders{}, oneAdd, faults.Plan{Faults: []faults.Fault{c.fault}})
				strategytest.Violates(t, res, histories.Duplicate, "applied twice")
			})
		}
	})
}

// TestRedisSetNXAfterLetsACopyThroughAfterItsTTL holds that a copy that
// comes back past the key's time to live is applied again: duplicate.
func TestRedisSetNXAfterLetsACopyThroughAfterItsTTL(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, redissetnxafter.Name, model.Orders{}, faults.Late))
	strategytest.EachCache(t, func(t *testing.T, cache adapters.CacheBackend) {
		late := strategytest.Late(0, faults.LateCopy, redissetnxafter.TTL+faults.LateMargin)
		res := strategytest.ExecuteOn(t, cache, redissetnxafter.Strategy(), model.Orders{}, oneAdd, faults.Plan{Faults: []faults.Fault{late}})
		strategytest.Violates(t, res, histories.Duplicate, "applied twice")
	})
}
