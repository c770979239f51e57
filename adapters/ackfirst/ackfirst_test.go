package ackfirst_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/ackfirst"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestAckFirstSurvivesReordering holds that ack-first passes a campaign of
// reorders on an unordered model.
func TestAckFirstSurvivesReordering(t *testing.T) {
	strategytest.Survives(t, ackfirst.Strategy(), model.Orders{}, faults.Reorder)
}

// TestAckFirstLosesWhatFailsAfterTheAck holds that a crash or publish failure
// after the ack is never retried: lost.
func TestAckFirstLosesWhatFailsAfterTheAck(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
		word  string
	}{
		{"crash after the write", strategytest.Crash(0, faults.AfterWrite), "had no effect at all"},
		{"crash before the commit", strategytest.Crash(0, faults.BeforeCommit), "had no effect at all"},
		{"crash after the commit", strategytest.Crash(0, faults.AfterCommit), "never published"},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}, "never published"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Lost), strategytest.Expected(t, ackfirst.Name, model.Orders{}, c.fault.Kind))
			res := strategytest.Execute(t, ackfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Lost, c.word)
		})
	}
}

// TestAckFirstLosesAConflictAfterTheAck holds that a competing consumer that
// loses the conflict on the order cannot retry the message it acked: lost.
func TestAckFirstLosesAConflictAfterTheAck(t *testing.T) {
	require.Equal(t, string(histories.Lost), strategytest.Expected(t, ackfirst.Name, model.Orders{}, faults.Concurrent))
	// Consumer 1 has acked m1 and read the order (no row yet: nothing to
	// lock) when it is preempted (boundary #4); consumer 2 acks m2 and
	// commits the order first, so consumer 1's write conflicts and m1,
	// acked, is never retried.
	res := strategytest.Execute(t, ackfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a"), strategytest.AddItem("o1", "b")},
		faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Concurrent, At: 3}}})
	strategytest.Violates(t, res, histories.Lost, "had no effect at all")
	require.Equal(t, []string{"k1"}, res.Findings[0].Keys)
}

// TestAckFirstAppliesACopyThatComesAgain holds that a copy delivered again
// (lost ack, broker duplicate, re-issue) is applied again: duplicate.
func TestAckFirstAppliesACopyThatComesAgain(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"lost ack", faults.Fault{Kind: faults.Redelivery, Variant: faults.AckLost}},
		{"broker duplicate", faults.Fault{Kind: faults.Redelivery, Variant: faults.Duplicate}},
		{"re-issue", faults.Fault{Kind: faults.Reissue, At: 0, Index: 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, ackfirst.Name, model.Orders{}, c.fault.Kind))
			res := strategytest.Execute(t, ackfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Duplicate, "applied twice")
		})
	}
}
