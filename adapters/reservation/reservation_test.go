package reservation_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/reservation"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// profile is a UserCreated or UserRenamed of a user.
func profile(typ, user, name string) model.Message {
	return model.Message{Aggregate: user, Type: typ, Payload: []byte(`{"name":"` + name + `"}`)}
}

// TestReservationSurvivesEveryFault holds that reservation passes campaigns of
// every fault kind on both unordered models.
func TestReservationSurvivesEveryFault(t *testing.T) {
	strategytest.Survives(t, reservation.Strategy(), model.Orders{}, "all")
	strategytest.Survives(t, reservation.Strategy(), model.Accounts{}, "all")
}

// TestReservationRepairsAFailureAfterTheCommit holds that a crash or publish
// failure after the commit is repaired by republishing the stored outputs.
func TestReservationRepairsAFailureAfterTheCommit(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		{"crash after the commit", strategytest.Crash(0, faults.AfterCommit)},
		{"crash after the first publish", strategytest.CrashAt(0, faults.AfterPublish, 0)},
		{"partial publish", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Partial, Process: faults.Consumer, Index: 1}},
		{"publish accepted, reported failed", faults.Fault{Kind: faults.PublishFailure, Variant: faults.LostConfirm, Process: faults.Consumer}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			strategytest.Passes(t, strategytest.Execute(t, reservation.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}}))
		})
	}
}

// TestReservationRecognisesAReissue holds that a re-issue finds its key
// reserved, even after a crash after the commit, and republishes.
func TestReservationRecognisesAReissue(t *testing.T) {
	reissue := faults.Fault{Kind: faults.Reissue, At: 0, Index: 0}
	strategytest.Passes(t, strategytest.Execute(t, reservation.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{reissue}}))
	strategytest.Passes(t, strategytest.Execute(t, reservation.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{reissue, strategytest.Crash(0, faults.AfterCommit)}}))
}

// TestReservationHoldsWhenTwoConsumersRaceOnOneKey holds that two consumers
// with copies of one message cannot both reserve its key, wherever one is
// preempted.
func TestReservationHoldsWhenTwoConsumersRaceOnOneKey(t *testing.T) {
	one := model.Workload{strategytest.AddItem("o1", "a")}
	t.Run("lease expired", func(t *testing.T) {
		// The lease expires at each point of the attempt in turn, and the
		// other consumer takes the copy there.
		for step := range faults.LeaseSteps {
			plan := faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Redelivery, Variant: faults.LeaseExpired, Index: step}}}
			res := strategytest.Execute(t, reservation.Strategy(), model.Orders{}, one, plan)
			require.Equal(t, histories.Pass, res.Verdict, "lease expired at step %d: %v", step+1, res.Findings)
		}
	})
	t.Run("re-issue", func(t *testing.T) {
		// The run has 11 scheduling boundaries before it drains.
		for b := range 11 {
			plan := faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Reissue, At: 0, Index: 0}, {Kind: faults.Concurrent, At: b}}}
			res := strategytest.Execute(t, reservation.Strategy(), model.Orders{}, one, plan)
			require.Equal(t, histories.Pass, res.Verdict, "preempted at boundary #%d: %v", b+1, res.Findings)
		}
	})
}

// TestReservationAppliesAnOrderedModelInArrivalOrder holds that on profiles, a
// copy put back behind a later one by a crash is applied out of order.
func TestReservationAppliesAnOrderedModelInArrivalOrder(t *testing.T) {
	require.Equal(t, string(histories.OutOfOrder), strategytest.Expected(t, reservation.Name, model.Profiles{}, faults.Crash))
	res := strategytest.Execute(t, reservation.Strategy(), model.Profiles{}, model.Workload{profile(model.UserCreated, "u1", "ann"), profile(model.UserRenamed, "u1", "bob")},
		faults.Plan{Faults: []faults.Fault{strategytest.Crash(0, faults.BeforeCommit)}})
	strategytest.Violates(t, res, histories.OutOfOrder, "took effect before")
}
