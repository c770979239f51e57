package dedupmemory_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/dedupmemory"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestDedupMemorySurvivesReorderingAndCompetingConsumers holds that
// dedup-memory passes campaigns of reorders and of competing consumers.
func TestDedupMemorySurvivesReorderingAndCompetingConsumers(t *testing.T) {
	strategytest.Survives(t, dedupmemory.Strategy(), model.Orders{}, faults.Reorder, faults.Concurrent)
}

// TestDedupMemoryMissesACopyAnotherConsumerTakes holds that a lease that
// expires while the first attempt runs hands the copy to a consumer whose
// set never saw it: duplicate, at every level.
func TestDedupMemoryMissesACopyAnotherConsumerTakes(t *testing.T) {
	for _, level := range adapters.Isolations() {
		require.Equal(t, string(histories.Duplicate), strategytest.ExpectedAt(t, level, dedupmemory.Name, model.Orders{}, faults.Redelivery))
		results := strategytest.LeaseSteps(t, campaign.Config{Strategy: dedupmemory.Strategy(), Isolation: level}, strategytest.AddItem("o1", "a"))
		require.True(t, strategytest.Shows(results, histories.Duplicate), "%s: %v", level, results)
	}
}

// TestDedupMemoryForgetsOnARestart holds that a restart empties the set, and a
// publish failure retries before the id is in it: duplicate.
func TestDedupMemoryForgetsOnARestart(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"crash before remembering", strategytest.Crash(0, dedupmemory.BeforeRemember)},
		{"crash before the ack", strategytest.Crash(0, faults.BeforeAck)},
		{"crash after the commit", strategytest.Crash(0, faults.AfterCommit)},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, dedupmemory.Name, model.Orders{}, c.fault.Kind))
			res := strategytest.Execute(t, dedupmemory.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Duplicate, "applied twice")
		})
	}
}

// TestDedupMemoryDoesNotShareItsSet holds that a second consumer, with a set
// of its own, applies a copy the first already handled: duplicate.
func TestDedupMemoryDoesNotShareItsSet(t *testing.T) {
	require.Equal(t, "violation", strategytest.Expected(t, dedupmemory.Name, model.Orders{}, "all"))
	// The lease of consumer 1's copy expires while it works: once it is
	// done, consumer 2 gets the copy back with an empty set.
	res := strategytest.Execute(t, dedupmemory.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Consumers: 2, Faults: []faults.Fault{
		{Kind: faults.Redelivery, Variant: faults.LeaseExpired},
	}})
	strategytest.Violates(t, res, histories.Duplicate, "applied twice")
}

// TestDedupMemoryAppliesAReissueAgain holds that a re-issue has a new id,
// which the set does not hold: duplicate.
func TestDedupMemoryAppliesAReissueAgain(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, dedupmemory.Name, model.Orders{}, faults.Reissue))
	res := strategytest.Execute(t, dedupmemory.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{{Kind: faults.Reissue, At: 0, Index: 0}}})
	strategytest.Violates(t, res, histories.Duplicate, "applied twice")
}
