package brokerwindow_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/brokerwindow"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

var oneAdd = model.Workload{strategytest.AddItem("o1", "a")}

// TestBrokerWindowSurvivesEverythingButTime holds that the window in front
// of the outbox passes campaigns of every kind but late, re-issues
// included.
func TestBrokerWindowSurvivesEverythingButTime(t *testing.T) {
	strategytest.Survives(t, brokerwindow.Strategy(), model.Orders{},
		faults.Crash, faults.Redelivery, faults.Reorder, faults.PublishFailure, faults.Reissue, faults.Concurrent)
}

// TestBrokerWindowLetsAReissueThroughAfterTheWindow holds that a re-issue
// just past the window is applied again (duplicate), one just before it is
// dropped, and a late redelivery (same id) is the outbox's to absorb. On
// Redis as in memory.
func TestBrokerWindowLetsAReissueThroughAfterTheWindow(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, brokerwindow.Name, model.Orders{}, faults.Late))
	plan := func(f faults.Fault) faults.Plan { return faults.Plan{Faults: []faults.Fault{f}} }
	strategytest.EachCache(t, func(t *testing.T, cache adapters.CacheBackend) {
		past := strategytest.Late(0, faults.LateReissue, brokerwindow.Window+faults.LateMargin)
		res := strategytest.ExecuteOn(t, cache, brokerwindow.Strategy(), model.Orders{}, oneAdd, plan(past))
		strategytest.Violates(t, res, histories.Duplicate, "applied twice")
		within := strategytest.Late(0, faults.LateReissue, brokerwindow.Window-faults.LateMargin)
		strategytest.Passes(t, strategytest.ExecuteOn(t, cache, brokerwindow.Strategy(), model.Orders{}, oneAdd, plan(within)))
		again := strategytest.Late(0, faults.LateCopy, faults.DefaultMaxDelay)
		strategytest.Passes(t, strategytest.ExecuteOn(t, cache, brokerwindow.Strategy(), model.Orders{}, oneAdd, plan(again)))
	})
}
