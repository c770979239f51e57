package outbox_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/outbox"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// profile is a UserCreated or UserRenamed of a user.
func profile(typ, user, name string) model.Message {
	return model.Message{Aggregate: user, Type: typ, Payload: []byte(`{"name":"` + name + `"}`)}
}

// TestOutboxSurvivesEveryFaultButReissues holds that outbox passes campaigns
// of crashes, redeliveries, reorders, publish failures and competing
// consumers.
func TestOutboxSurvivesEveryFaultButReissues(t *testing.T) {
	strategytest.Survives(t, outbox.Strategy(), model.Orders{}, faults.Crash, faults.Redelivery, faults.Reorder, faults.PublishFailure, faults.Concurrent)
}

// TestOutboxSurvivesItsWeakestSpots holds that failures after the handler's
// commit or between the dispatcher's publish and delete cost nothing.
func TestOutboxSurvivesItsWeakestSpots(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"handler crash after the commit", strategytest.Crash(0, faults.AfterCommit)},
		{"handler crash before the ack", strategytest.Crash(0, faults.BeforeAck)},
		{"dispatcher crash after the first publish", faults.Fault{Kind: faults.Crash, Process: faults.Dispatcher, Point: faults.AfterPublish}},
		{"dispatcher crash before its commit", faults.Fault{Kind: faults.Crash, Process: faults.Dispatcher, Point: faults.BeforeCommit}},
		{"dispatcher partial publish", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Partial, Process: faults.Dispatcher, Index: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// State, processed id and outbox rows commit together; the
			// dispatcher republishes rows it did not delete under the same
			// ids, which deduplication by id (the default policy) absorbs.
			strategytest.Passes(t, strategytest.Execute(t, outbox.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}}))
		})
	}
}

// TestOutboxRepublishesUnderTheSameIDs holds that a dispatcher crash after
// publishing republishes the same ids, which downstream policy none refuses.
func TestOutboxRepublishesUnderTheSameIDs(t *testing.T) {
	res := strategytest.ExecuteWith(t, campaign.Config{Strategy: outbox.Strategy(), Model: model.Orders{}, Downstream: checkers.DownstreamNone},
		model.Workload{strategytest.AddItem("o1", "a")},
		faults.Plan{Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Dispatcher, Point: faults.AfterPublish}}})
	strategytest.Violates(t, res, histories.Duplicate, "published more than once")
}

// TestOutboxAppliesAReissueAgain holds that outbox keys on the message id, so
// a re-issue is applied again: duplicate.
func TestOutboxAppliesAReissueAgain(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, outbox.Name, model.Orders{}, faults.Reissue))
	res := strategytest.Execute(t, outbox.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{{Kind: faults.Reissue, At: 0, Index: 0}}})
	strategytest.Violates(t, res, histories.Duplicate, "applied twice")
}

// TestOutboxAppliesAnOrderedModelInArrivalOrder holds that on profiles, a copy
// put back behind a later one is applied against send order: out-of-order.
func TestOutboxAppliesAnOrderedModelInArrivalOrder(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"crash before the commit", strategytest.Crash(0, faults.BeforeCommit)},
		{"reorder", faults.Fault{Kind: faults.Reorder, Index: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.OutOfOrder), strategytest.Expected(t, outbox.Name, model.Profiles{}, c.fault.Kind))
			res := strategytest.Execute(t, outbox.Strategy(), model.Profiles{}, model.Workload{profile(model.UserCreated, "u1", "ann"), profile(model.UserRenamed, "u1", "bob")},
				faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.OutOfOrder, "took effect before")
		})
	}
}
