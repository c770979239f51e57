package dedup_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/dedup"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestDedupSurvivesRedeliveryReorderingAndCompetingConsumers holds that dedup
// passes campaigns of redeliveries, of reorders and of competing consumers.
func TestDedupSurvivesRedeliveryReorderingAndCompetingConsumers(t *testing.T) {
	strategytest.Survives(t, dedup.Strategy(), model.Orders{}, faults.Redelivery, faults.Reorder, faults.Concurrent)
}

// TestDedupSkipsACopyOfAFinishedMessage holds that a copy of a message whose
// outputs are all out is recognised and skipped.
func TestDedupSkipsACopyOfAFinishedMessage(t *testing.T) {
	for name, fault := range map[string]faults.Fault{
		"lost ack":             {Kind: faults.Redelivery, Variant: faults.AckLost},
		"crash before the ack": strategytest.Crash(0, faults.BeforeAck),
	} {
		t.Run(name, func(t *testing.T) {
			strategytest.Passes(t, strategytest.Execute(t, dedup.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{fault}}))
		})
	}
}

// TestDedupLosesOutputsNotPublishedBeforeAFailure holds that a crash or
// publish failure after the commit loses the outputs not yet out: lost.
func TestDedupLosesOutputsNotPublishedBeforeAFailure(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"crash after the commit", strategytest.Crash(0, faults.AfterCommit)},
		{"crash after the first publish", strategytest.CrashAt(0, faults.AfterPublish, 0)},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Lost), strategytest.Expected(t, dedup.Name, model.Orders{}, c.fault.Kind))
			res := strategytest.Execute(t, dedup.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Lost, "never published")
		})
	}
}

// TestDedupAppliesAReissueAgain holds that dedup keys on the message id, so a
// re-issue is applied again: duplicate.
func TestDedupAppliesAReissueAgain(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, dedup.Name, model.Orders{}, faults.Reissue))
	res := strategytest.Execute(t, dedup.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{{Kind: faults.Reissue, At: 0, Index: 0}}})
	strategytest.Violates(t, res, histories.Duplicate, "applied twice")
}
