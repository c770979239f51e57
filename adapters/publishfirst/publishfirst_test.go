package publishfirst_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/publishfirst"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestPublishFirstSurvivesRedeliveryReorderingAndCompetingConsumers holds that
// publish-first passes campaigns of redeliveries, of reorders and of competing
// consumers.
func TestPublishFirstSurvivesRedeliveryReorderingAndCompetingConsumers(t *testing.T) {
	strategytest.Survives(t, publishfirst.Strategy(), model.Orders{}, faults.Reorder, faults.Concurrent)
	strategytest.SurvivesAt(t, adapters.RepeatableRead, publishfirst.Strategy(), model.Orders{}, faults.Redelivery)
}

// TestPublishFirstPublishesAGhostWhenALeaseExpiresAtReadCommitted holds
// that a second consumer given the copy of an expired lease computes its
// outputs on the state the first one committed meanwhile (read committed
// reads it), publishes them under the same ids, then fails to mark the id
// processed: its outputs belong to no exactly-once execution. At
// repeatable read it computes on its snapshot and publishes what the
// first one did.
func TestPublishFirstPublishesAGhostWhenALeaseExpiresAtReadCommitted(t *testing.T) {
	require.Equal(t, string(histories.Ghost), strategytest.Expected(t, publishfirst.Name, model.Orders{}, faults.Redelivery))
	w := func(level adapters.Isolation) []checkers.Result {
		return strategytest.LeaseSteps(t, campaign.Config{Strategy: publishfirst.Strategy(), Isolation: level}, strategytest.AddItem("o1", "a"))
	}
	require.True(t, strategytest.Shows(w(adapters.ReadCommitted), histories.Ghost))
	for _, res := range w(adapters.RepeatableRead) {
		strategytest.Passes(t, res)
	}
}

// TestPublishFirstSurvivesACrashAfterTheCommit holds that a copy that comes
// back after the commit is recognised as processed and skipped.
func TestPublishFirstSurvivesACrashAfterTheCommit(t *testing.T) {
	for _, point := range []faults.Point{faults.AfterCommit, faults.BeforeAck} {
		t.Run(string(point), func(t *testing.T) {
			strategytest.Passes(t, strategytest.Execute(t, publishfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{strategytest.Crash(0, point)}}))
		})
	}
}

// TestPublishFirstPublishesGhostsWhenTheCommitDoesNotFollow holds that outputs
// published before a commit that never happens, then recomputed on a changed
// order, are ghosts.
func TestPublishFirstPublishesGhostsWhenTheCommitDoesNotFollow(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"crash after the first publish", strategytest.CrashAt(0, faults.AfterPublish, 0)},
		{"crash before the commit", strategytest.Crash(0, faults.BeforeCommit)},
		{"partial publish", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Partial, Process: faults.Consumer, Index: 1}},
		{"publish accepted, reported failed", faults.Fault{Kind: faults.PublishFailure, Variant: faults.LostConfirm, Process: faults.Consumer}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Ghost), strategytest.Expected(t, publishfirst.Name, model.Orders{}, c.fault.Kind))
			// m1's copy goes back behind m2, which adds to the same line:
			// the retry of m1 computes ItemAdded with another quantity.
			res := strategytest.Execute(t, publishfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a"), strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Ghost, "never committed")
		})
	}
}

// TestPublishFirstRepublishesTheSameOutputsWhenNothingChangedInBetween holds
// that a retry on an unchanged order republishes the same outputs under the
// same ids: no ghost.
func TestPublishFirstRepublishesTheSameOutputsWhenNothingChangedInBetween(t *testing.T) {
	strategytest.Passes(t, strategytest.Execute(t, publishfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{strategytest.Crash(0, faults.BeforeCommit)}}))
}

// TestPublishFirstAppliesAReissueAgain holds that publish-first keys on the
// message id, so a re-issue is applied again: duplicate.
func TestPublishFirstAppliesAReissueAgain(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, publishfirst.Name, model.Orders{}, faults.Reissue))
	res := strategytest.Execute(t, publishfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{{Kind: faults.Reissue, At: 0, Index: 0}}})
	strategytest.Violates(t, res, histories.Duplicate, "applied twice")
}
