package dedupmarkfirst_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/dedupmarkfirst"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestDedupMarkFirstSurvivesRedeliveryAndReordering holds that dedup-mark-
// first passes campaigns of redeliveries and of reorders.
func TestDedupMarkFirstSurvivesRedeliveryAndReordering(t *testing.T) {
	strategytest.Survives(t, dedupmarkfirst.Strategy(), model.Orders{}, faults.Redelivery, faults.Reorder)
}

// TestDedupMarkFirstLosesTheWorkAfterTheMark holds that a crash between the
// mark's commit and the work's leaves the id marked and the work undone: lost.
func TestDedupMarkFirstLosesTheWorkAfterTheMark(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		// The first commit of the attempt is the mark's.
		{"crash after the mark's commit", strategytest.Crash(0, faults.AfterCommit)},
		// Write #1 is the mark, write #2 the state.
		{"crash after the state's write", strategytest.CrashAt(0, faults.AfterWrite, 1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Lost), strategytest.Expected(t, dedupmarkfirst.Name, model.Orders{}, faults.Crash))
			res := strategytest.Execute(t, dedupmarkfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Lost, "had no effect at all")
		})
	}
}

// TestDedupMarkFirstLosesAConflictAfterTheMark holds that a competing consumer
// that marks its message, then loses the conflict on the order, loses it.
func TestDedupMarkFirstLosesAConflictAfterTheMark(t *testing.T) {
	require.Equal(t, string(histories.Lost), strategytest.Expected(t, dedupmarkfirst.Name, model.Orders{}, faults.Concurrent))
	// Consumer 1 has marked m1 and read the order (no row yet: nothing to
	// lock) when it is preempted (boundary #7); consumer 2 marks m2 and
	// commits the order first, so consumer 1's write conflicts, it nacks,
	// and the redelivered m1 is skipped as marked.
	res := strategytest.Execute(t, dedupmarkfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a"), strategytest.AddItem("o1", "b")},
		faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Concurrent, At: 6}}})
	strategytest.Violates(t, res, histories.Lost, "had no effect at all")
	require.Equal(t, []string{"k1"}, res.Findings[0].Keys)
}

// TestDedupMarkFirstLosesOutputsAfterTheWork holds that a crash or publish
// failure after the work's commit loses the outputs: lost.
func TestDedupMarkFirstLosesOutputsAfterTheWork(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"crash before the first publish", strategytest.CrashAt(0, faults.BeforePublish, 0)},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Lost), strategytest.Expected(t, dedupmarkfirst.Name, model.Orders{}, c.fault.Kind))
			res := strategytest.Execute(t, dedupmarkfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Lost, "never published")
		})
	}
}

// TestDedupMarkFirstAppliesAReissueAgain holds that dedup-mark-first keys on
// the message id, so a re-issue is applied again: duplicate.
func TestDedupMarkFirstAppliesAReissueAgain(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, dedupmarkfirst.Name, model.Orders{}, faults.Reissue))
	res := strategytest.Execute(t, dedupmarkfirst.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{{Kind: faults.Reissue, At: 0, Index: 0}}})
	strategytest.Violates(t, res, histories.Duplicate, "applied twice")
}
