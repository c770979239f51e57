package statebased_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/statebased"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// confirm is a Confirm of an order.
func confirm(order string) model.Message {
	return model.Message{Aggregate: order, Type: model.Confirm}
}

// TestStateBasedSkipsAReissueItCanRecognise holds that a re-issued Confirm
// finds the order confirmed and is skipped.
func TestStateBasedSkipsAReissueItCanRecognise(t *testing.T) {
	// Before delivery #2 (the Confirm), the sender re-issues the Confirm.
	strategytest.Passes(t, strategytest.Execute(t, statebased.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a"), confirm("o1")},
		faults.Plan{Faults: []faults.Fault{{Kind: faults.Reissue, At: 1, Index: 1}}}))
}

// TestStateBasedDoesNotApplyToAModelThatCannotTell holds that state-based
// refuses accounts, whose state cannot tell whether a message was applied
// (n/a).
func TestStateBasedDoesNotApplyToAModelThatCannotTell(t *testing.T) {
	for _, column := range append([]faults.Kind{"all"}, faults.AllKinds...) {
		require.Equal(t, "n/a", strategytest.Expected(t, statebased.Name, model.Accounts{}, column))
	}
	_, err := campaign.New(campaign.Config{Strategy: statebased.Strategy(), Model: model.Accounts{}})
	var unsupported *adapters.UnsupportedError
	require.True(t, errors.As(err, &unsupported), "got %v", err)
}

// TestStateBasedSkipsALegitimateRepeat holds that without any fault, a second
// Confirm, owed an OrderRejected, is skipped as applied: lost.
func TestStateBasedSkipsALegitimateRepeat(t *testing.T) {
	res := strategytest.Execute(t, statebased.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a"), confirm("o1"), confirm("o1")}, faults.Plan{})
	strategytest.Violates(t, res, histories.Lost, "had no effect at all")
	require.Equal(t, []string{"k3"}, res.Findings[0].Keys)
}

// TestStateBasedLosesTheOutputsOfARecognisedMessage holds that a Confirm that
// fails after its commit is skipped on retry, its outputs never published:
// lost.
func TestStateBasedLosesTheOutputsOfARecognisedMessage(t *testing.T) {
	for name, fault := range map[string]faults.Fault{
		"crash after the commit": strategytest.Crash(1, faults.AfterCommit),
		"publish failure":        {Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer, At: 1},
	} {
		t.Run(name, func(t *testing.T) {
			res := strategytest.Execute(t, statebased.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a"), confirm("o1")}, faults.Plan{Faults: []faults.Fault{fault}})
			strategytest.Violates(t, res, histories.Lost, "never published")
		})
	}
}

// TestStateBasedAppliesAnAddItemAgain holds that an AddItem, which the state
// cannot recognise, is applied again when it runs again: duplicate.
func TestStateBasedAppliesAnAddItemAgain(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"lost ack", faults.Fault{Kind: faults.Redelivery, Variant: faults.AckLost}},
		{"crash after the commit", strategytest.Crash(0, faults.AfterCommit)},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}},
		{"re-issue", faults.Fault{Kind: faults.Reissue, At: 0, Index: 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, statebased.Name, model.Orders{}, c.fault.Kind))
			res := strategytest.Execute(t, statebased.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Duplicate, "applied twice")
		})
	}
}
