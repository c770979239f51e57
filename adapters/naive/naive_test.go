package naive_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/naive"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestNaiveSurvivesReorderingAndCompetingConsumers holds that naive passes
// campaigns of reorders and of competing consumers on an unordered model.
func TestNaiveSurvivesReorderingAndCompetingConsumers(t *testing.T) {
	strategytest.Survives(t, naive.Strategy(), model.Orders{}, faults.Reorder, faults.Concurrent)
}

// TestNaiveSurvivesACrashBeforeTheCommit holds that a crash before the commit
// leaves nothing behind: the copy comes back and is applied once.
func TestNaiveSurvivesACrashBeforeTheCommit(t *testing.T) {
	for _, point := range []faults.Point{faults.AfterBegin, faults.AfterWrite, faults.BeforeCommit} {
		t.Run(string(point), func(t *testing.T) {
			strategytest.Passes(t, strategytest.Execute(t, naive.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{strategytest.Crash(0, point)}}))
		})
	}
}

// TestNaiveAppliesACommittedMessageAgain holds that whatever runs a committed
// message again (crash, lost ack, publish failure, re-issue) applies it twice:
// duplicate.
func TestNaiveAppliesACommittedMessageAgain(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"crash after the commit", strategytest.Crash(0, faults.AfterCommit)},
		{"crash before the ack", strategytest.Crash(0, faults.BeforeAck)},
		{"lost ack", faults.Fault{Kind: faults.Redelivery, Variant: faults.AckLost}},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}},
		{"re-issue", faults.Fault{Kind: faults.Reissue, At: 0, Index: 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, naive.Name, model.Orders{}, c.fault.Kind))
			res := strategytest.Execute(t, naive.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Duplicate, "applied twice")
		})
	}
}
