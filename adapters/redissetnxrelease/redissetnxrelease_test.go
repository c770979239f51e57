package redissetnxrelease_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/redissetnxrelease"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

var oneAdd = model.Workload{strategytest.AddItem("o1", "a")}

// TestRedisSetNXReleaseSurvivesRedeliveryReorderingReissuesAndCompetition
// holds that releasing the key on an error fixes what a conflict did to
// redis-setnx: competing consumers pass, as do redeliveries, reorders and
// re-issues.
func TestRedisSetNXReleaseSurvivesRedeliveryReorderingReissuesAndCompetition(t *testing.T) {
	strategytest.Survives(t, redissetnxrelease.Strategy(), model.Orders{}, faults.Redelivery, faults.Reorder, faults.Reissue, faults.Concurrent)
}

// TestRedisSetNXReleaseFailsWhereNoErrorIsReturnedAndAfterTheCommit holds
// that a crash never releases the key (lost), and that a publish failure
// releases a key whose work is done (duplicate). On Redis as in memory.
func TestRedisSetNXReleaseFailsWhereNoErrorIsReturnedAndAfterTheCommit(t *testing.T) {
	cases := []struct {
		name    string
		fault   faults.Fault
		anomaly histories.Anomaly
		word    string
	}{
		{"crash after the SET", strategytest.CrashAt(0, faults.AfterCache, 0), histories.Lost, "had no effect at all"},
		{"crash after the commit", strategytest.Crash(0, faults.AfterCommit), histories.Lost, "never published"},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}, histories.Duplicate, "applied twice"},
	}
	strategytest.EachCache(t, func(t *testing.T, cache adapters.CacheBackend) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				require.Equal(t, string(c.anomaly), strategytest.Expected(t, redissetnxrelease.Name, model.Orders{}, c.fault.Kind))
				res := strategytest.ExecuteOn(t, cache, redissetnxrelease.Strategy(), model.Orders{}, oneAdd, faults.Plan{Faults: []faults.Fault{c.fault}})
				strategytest.Violates(t, res, c.anomaly, c.word)
			})
		}
	})
}

// TestRedisSetNXReleaseLetsACopyThroughAfterItsTTL holds that a copy that
// comes back past the key's time to live is applied again: duplicate.
func TestRedisSetNXReleaseLetsACopyThroughAfterItsTTL(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, redissetnxrelease.Name, model.Orders{}, faults.Late))
	late := strategytest.Late(0, faults.LateReissue, redissetnxrelease.TTL+faults.LateMargin)
	res := strategytest.Execute(t, redissetnxrelease.Strategy(), model.Orders{}, oneAdd, faults.Plan{Faults: []faults.Fault{late}})
	strategytest.Violates(t, res, histories.Duplicate, "applied twice")
}
