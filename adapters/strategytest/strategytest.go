// Package strategytest is what the built-in strategies' tests share: a
// campaign that must pass under the faults a strategy's doc says it
// survives, and a hand-built case that must show the anomaly its doc
// predicts, each checked against expected/matrix.json. Like storetest, it
// is imported by tests only.
package strategytest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/rediscache"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/redistest"
	"github.com/oncecheck/oncecheck/model"
)

// ExpectedMatrix is the path of the expected verdicts from a strategy's
// package directory.
const ExpectedMatrix = "../../expected/matrix.json"

// Expected returns the verdict expected/matrix.json names for a strategy
// under a fault column of a model.
func Expected(t *testing.T, strategy string, m model.Model, column faults.Kind) string {
	t.Helper()
	mx, err := campaign.LoadExpectedMatrix(ExpectedMatrix)
	require.NoError(t, err)
	want, ok := mx[m.Name()][strategy][string(column)]
	require.True(t, ok, "expected/matrix.json has a cell %s/%s/%s", m.Name(), strategy, column)
	return want
}

// Survives runs, for each fault column, a campaign of s on model m under
// that kind alone ("all": every kind), after checking that
// expected/matrix.json predicts a pass there, and requires it to pass with
// the faults injected: 500 runs, 50 with -short (200 for "all").
func Survives(t *testing.T, s adapters.Strategy, m model.Model, columns ...faults.Kind) {
	t.Helper()
	runs := 500
	if testing.Short() {
		runs = 50
	}
	for _, column := range columns {
		require.Equal(t, "pass", Expected(t, s.Name, m, column), "expected/matrix.json: %s under %s", m.Name(), column)
		kinds, n := []faults.Kind{column}, runs
		if column == "all" {
			// Seven kinds share the faults of a run: with -short, more
			// runs give each kind its turn.
			kinds, n = faults.AllKinds, max(runs, 200)
		}
		tester, err := campaign.New(campaign.Config{Strategy: s, Model: m, Faults: kinds})
		require.NoError(t, err)
		t.Cleanup(func() { _ = tester.Close() })
		rep, err := tester.Search(context.Background(), campaign.SearchOptions{Runs: n, Seed: 1, Out: t.TempDir(), NoShrink: true})
		require.NoError(t, err)
		require.Equal(t, histories.Pass, rep.Verdict, "%s under %s, seed %d: %v", m.Name(), column, rep.FailingSeed, rep.Result.Findings)
		require.Equal(t, n, rep.Runs)
		for _, k := range kinds {
			if k == faults.PublishFailure && m.Name() == (model.Profiles{}).Name() {
				continue // profiles publishes nothing: no publish to fail
			}
			require.NotZero(t, rep.Injected[k], "%s faults took effect", k)
		}
	}
}

// Execute runs one hand-built case with s on model m and requires every
// fault of its plan to have taken effect (a plan validates even when a
// fault's moment never comes).
func Execute(t *testing.T, s adapters.Strategy, m model.Model, w model.Workload, p faults.Plan) checkers.Result {
	t.Helper()
	return ExecuteWith(t, campaign.Config{Strategy: s, Model: m}, w, p)
}

// ExecuteWith is Execute with a configuration of its own.
func ExecuteWith(t *testing.T, cfg campaign.Config, w model.Workload, p faults.Plan) checkers.Result {
	t.Helper()
	require.NoError(t, p.Validate())
	tester, err := campaign.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tester.Close() })
	h, res, err := tester.Execute(campaign.Case{Workload: w.Number(), Plan: p}, 1)
	require.NoError(t, err)
	injected := h.InjectedFaults()
	for k, n := range p.Counts() {
		require.GreaterOrEqual(t, injected[string(k)], n, "every %s fault of the plan took effect", k)
	}
	return res
}

// Passes requires res to be a pass.
func Passes(t *testing.T, res checkers.Result) {
	t.Helper()
	require.Equal(t, histories.Pass, res.Verdict, "%v", res.Findings)
}

// Violates requires res to be a violation whose primary anomaly is a, with
// a finding of a whose text says word.
func Violates(t *testing.T, res checkers.Result, a histories.Anomaly, word string) {
	t.Helper()
	require.Equal(t, histories.Violation, res.Verdict, "%v", res.Findings)
	require.Equal(t, a, res.Primary(), "%v", res.Findings)
	for _, f := range res.Findings {
		if f.Anomaly == a && strings.Contains(f.Text, word) {
			return
		}
	}
	require.Failf(t, "no finding says it", "no %s finding says %q: %v", a, word, res.Findings)
}

// AddItem is an AddItem of one unit of sku to an order.
func AddItem(order, sku string) model.Message {
	return model.Message{Aggregate: order, Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"` + sku + `"}`)}
}

// Crash is a consumer crash at a point of delivery #at+1.
func Crash(at int, point faults.Point) faults.Fault {
	return faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: at, Point: point}
}

// CrashAt is a consumer crash at the index-th publish or write of delivery
// #at+1.
func CrashAt(at int, point faults.Point, index int) faults.Fault {
	return faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: at, Point: point, Index: index}
}

// Late is a late fault: the copy of delivery #at+1 comes again after delay,
// as the same copy (faults.LateCopy) or re-issued (faults.LateReissue).
func Late(at int, variant string, delay time.Duration) faults.Fault {
	return faults.Fault{Kind: faults.Late, At: at, Variant: variant, Delay: faults.Duration(delay)}
}

// EachCache runs f once on the simulation's in-memory cache ("mem") and
// once on a real Redis ("redis": $ONCECHECK_REDIS, else 127.0.0.1:6379;
// without one the subtest is skipped, or fails in CI), so that a strategy
// that uses Env.Cache is held to the same outcome on both.
func EachCache(t *testing.T, f func(t *testing.T, cache adapters.CacheBackend)) {
	t.Helper()
	t.Run("mem", func(t *testing.T) { f(t, nil) })
	t.Run("redis", func(t *testing.T) { f(t, rediscache.Backend{Addr: redistest.Addr(t)}) })
}

// ExecuteOn is Execute with the handlers' cache on cache (nil: in memory).
func ExecuteOn(t *testing.T, cache adapters.CacheBackend, s adapters.Strategy, m model.Model, w model.Workload, p faults.Plan) checkers.Result {
	t.Helper()
	return ExecuteWith(t, campaign.Config{Strategy: s, Model: m, Cache: cache}, w, p)
}
