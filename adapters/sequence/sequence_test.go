package sequence_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/sequence"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestSequenceSurvivesPublishFailures holds that sequence passes campaigns
// of publish failures.
func TestSequenceSurvivesPublishFailures(t *testing.T) {
	strategytest.Survives(t, sequence.Strategy(), model.Orders{}, faults.PublishFailure)
}

// TestSequenceAppliesACopyTwiceAtReadCommitted holds that at read committed the
// first message of an aggregate has no position row to lock (SELECT ... FOR
// UPDATE of a missing row locks nothing): a consumer given the copy of an
// expired lease reads no position either, and both apply it: duplicate. At
// repeatable read the second one's write fails to serialize, and it
// survives redeliveries.
func TestSequenceAppliesACopyTwiceAtReadCommitted(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, sequence.Name, model.Orders{}, faults.Redelivery))
	results := strategytest.LeaseSteps(t, campaign.Config{Strategy: sequence.Strategy()}, strategytest.AddItem("o1", "a"))
	require.True(t, strategytest.Shows(results, histories.Duplicate), "%v", results)
	strategytest.SurvivesAt(t, adapters.RepeatableRead, sequence.Strategy(), model.Orders{}, faults.Redelivery)
}

// TestSequenceSurvivesCrashesAfterTheCommit holds that state, position and
// outbox rows commit together: crashes after the commit cost nothing.
func TestSequenceSurvivesCrashesAfterTheCommit(t *testing.T) {
	for name, fault := range map[string]faults.Fault{
		"handler crash after the commit":           strategytest.Crash(0, faults.AfterCommit),
		"dispatcher crash after the first publish": {Kind: faults.Crash, Process: faults.Dispatcher, Point: faults.AfterPublish},
	} {
		t.Run(name, func(t *testing.T) {
			strategytest.Passes(t, strategytest.Execute(t, sequence.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{fault}}))
		})
	}
}

// TestSequenceSkipsAnEarlierMessageThatArrivesLate holds that an earlier
// message processed after a later one (reorder, crash, lost conflict) is
// skipped: lost.
func TestSequenceSkipsAnEarlierMessageThatArrivesLate(t *testing.T) {
	cases := []struct {
		name string
		plan faults.Plan
	}{
		{"reorder", faults.Plan{Faults: []faults.Fault{{Kind: faults.Reorder, Index: 1}}}},
		{"crash before the commit", faults.Plan{Faults: []faults.Fault{strategytest.Crash(0, faults.BeforeCommit)}}},
		// Consumer 1 is preempted in m1's transaction (boundary #2), which
		// then loses to m2's commit and is nacked.
		{"lost conflict", faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Concurrent, At: 1}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Lost), strategytest.Expected(t, sequence.Name, model.Orders{}, c.plan.Faults[0].Kind))
			res := strategytest.Execute(t, sequence.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a"), strategytest.AddItem("o1", "b")}, c.plan)
			strategytest.Violates(t, res, histories.Lost, "had no effect at all")
			require.Equal(t, []string{"k1"}, res.Findings[0].Keys)
		})
	}
}

// TestSequenceAppliesAReissueAgain holds that a re-issue gets a new, higher
// position, so it is applied again: duplicate.
func TestSequenceAppliesAReissueAgain(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, sequence.Name, model.Orders{}, faults.Reissue))
	res := strategytest.Execute(t, sequence.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{{Kind: faults.Reissue, At: 0, Index: 0}}})
	strategytest.Violates(t, res, histories.Duplicate, "applied twice")
}
