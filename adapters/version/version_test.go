package version_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/adapters/version"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// profile is a UserCreated or UserRenamed of a user.
func profile(typ, user, name string) model.Message {
	return model.Message{Aggregate: user, Type: typ, Payload: []byte(`{"name":"` + name + `"}`)}
}

// TestVersionSurvivesReorderingReissuesAndCompetingConsumers holds that
// version passes campaigns of reorders, re-issues and competing consumers.
func TestVersionSurvivesReorderingReissuesAndCompetingConsumers(t *testing.T) {
	strategytest.Survives(t, version.Strategy(), model.Orders{}, faults.Reorder, faults.Reissue, faults.Concurrent)
}

// TestVersionAppliesACopyTwiceAtReadCommitted holds that at read committed the
// first message of an aggregate has no version row to lock (SELECT ... FOR
// UPDATE of a missing row locks nothing): a consumer given the copy of an
// expired lease reads no version either, and both apply it: duplicate. At
// repeatable read the second one's write fails to serialize, and it
// survives redeliveries.
func TestVersionAppliesACopyTwiceAtReadCommitted(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, version.Name, model.Orders{}, faults.Redelivery))
	results := strategytest.LeaseSteps(t, campaign.Config{Strategy: version.Strategy()}, strategytest.AddItem("o1", "a"))
	require.True(t, strategytest.Shows(results, histories.Duplicate), "%v", results)
	strategytest.SurvivesAt(t, adapters.RepeatableRead, version.Strategy(), model.Orders{}, faults.Redelivery)
}

// TestVersionKeepsAnOrderedModelInSendOrder holds that version passes a
// campaign of every fault kind on the ordered profiles model.
func TestVersionKeepsAnOrderedModelInSendOrder(t *testing.T) {
	strategytest.Survives(t, version.Strategy(), model.Profiles{}, "all")
}

// TestVersionMakesAnEarlyMessageWait holds that a message that arrives before
// the one it follows waits for it: send order is kept.
func TestVersionMakesAnEarlyMessageWait(t *testing.T) {
	for name, fault := range map[string]faults.Fault{
		"reorder":                 {Kind: faults.Reorder, Index: 1},
		"crash before the commit": strategytest.Crash(0, faults.BeforeCommit),
	} {
		t.Run(name, func(t *testing.T) {
			strategytest.Passes(t, strategytest.Execute(t, version.Strategy(), model.Profiles{}, model.Workload{profile(model.UserCreated, "u1", "ann"), profile(model.UserRenamed, "u1", "bob")},
				faults.Plan{Faults: []faults.Fault{fault}}))
		})
	}
}

// TestVersionLosesOutputsAfterTheCommit holds that a crash or publish failure
// after the commit loses outputs, as the retry is stale: lost.
func TestVersionLosesOutputsAfterTheCommit(t *testing.T) {
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
			require.Equal(t, string(histories.Lost), strategytest.Expected(t, version.Name, model.Orders{}, c.fault.Kind))
			res := strategytest.Execute(t, version.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Lost, "never published")
		})
	}
}
