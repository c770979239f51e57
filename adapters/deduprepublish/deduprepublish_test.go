package deduprepublish_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/deduprepublish"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestDedupRepublishSurvivesReorderingAndCompetingConsumers holds that dedup-
// republish passes campaigns of reorders and of competing consumers.
func TestDedupRepublishSurvivesReorderingAndCompetingConsumers(t *testing.T) {
	strategytest.Survives(t, deduprepublish.Strategy(), model.Orders{}, faults.Reorder, faults.Concurrent)
}

// TestDedupRepublishRepublishesOutputsOfTheWrongState holds that a copy of a
// processed message republishes outputs recomputed on the current state:
// inconsistent.
func TestDedupRepublishRepublishesOutputsOfTheWrongState(t *testing.T) {
	cases := []struct {
		name    string
		fault   faults.Fault
		anomaly histories.Anomaly
		word    string
	}{
		{"lost ack", faults.Fault{Kind: faults.Redelivery, Variant: faults.AckLost}, histories.Inconsistent, "two contents"},
		// The first publish is lost; what goes out is computed as if the
		// message were applied again: lost, beside duplicate.
		{"crash after the commit", strategytest.Crash(0, faults.AfterCommit), histories.Lost, `ItemAdded{"qty":2,"sku":"a"}`},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}, histories.Lost, `ItemAdded{"qty":2,"sku":"a"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := strategytest.Execute(t, deduprepublish.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, c.anomaly, c.word)
		})
	}
}

// TestDedupRepublishAppliesAReissueAgain holds that dedup-republish keys on
// the message id, so a re-issue is applied again: duplicate.
func TestDedupRepublishAppliesAReissueAgain(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, deduprepublish.Name, model.Orders{}, faults.Reissue))
	res := strategytest.Execute(t, deduprepublish.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{{Kind: faults.Reissue, At: 0, Index: 0}}})
	strategytest.Violates(t, res, histories.Duplicate, "applied twice")
}
