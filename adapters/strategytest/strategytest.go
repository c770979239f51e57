// Package strategytest is what the built-in strategies' tests share: a
// campaign that must pass under the faults a strategy's doc says it
// survives, and a hand-built case that must show the anomaly its doc
// predicts, each checked against the expected matrix of the isolation
// level (expected/matrix.json at the default). Like storetest, it is
// imported by tests only.
package strategytest

import (
	"context"
	"slices"
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

// ExpectedDir is the directory of the expected verdicts (see
// campaign.ExpectedMatrixFile) from a strategy's package directory.
const ExpectedDir = "../../expected"

// Expected returns the verdict expected/matrix.json names for a strategy
// under a fault column of a model, at the default isolation level.
func Expected(t *testing.T, strategy string, m model.Model, column faults.Kind) string {
	t.Helper()
	return ExpectedAt(t, adapters.ReadCommitted, strategy, m, column)
}

// ExpectedAt is Expected at an isolation level.
func ExpectedAt(t *testing.T, level adapters.Isolation, strategy string, m model.Model, column faults.Kind) string {
	t.Helper()
	file := campaign.ExpectedMatrixFile(ExpectedDir, level)
	mx, err := campaign.LoadExpectedMatrix(file)
	require.NoError(t, err)
	want, ok := mx[m.Name()][strategy][string(column)]
	require.True(t, ok, "%s has a cell %s/%s/%s", file, m.Name(), strategy, column)
	return want
}

// Survives runs, for each fault column, a campaign of s on model m under
// that kind alone ("all": every kind), at the default isolation level,
// after checking that expected/matrix.json predicts a pass there, and
// requires it to pass with the faults injected: 500 runs, 50 with -short
// (200 for "all").
func Survives(t *testing.T, s adapters.Strategy, m model.Model, columns ...faults.Kind) {
	t.Helper()
	SurvivesAt(t, adapters.ReadCommitted, s, m, columns...)
}

// SurvivesAt is Survives at an isolation level.
func SurvivesAt(t *testing.T, level adapters.Isolation, s adapters.Strategy, m model.Model, columns ...faults.Kind) {
	t.Helper()
	runs := 500
	if testing.Short() {
		runs = 50
	}
	for _, column := range columns {
		require.Equal(t, "pass", ExpectedAt(t, level, s.Name, m, column), "%s under %s at %s", m.Name(), column, level)
		kinds, n := []faults.Kind{column}, runs
		if column == "all" {
			// Seven kinds share the faults of a run: with -short, more
			// runs give each kind its turn.
			kinds, n = faults.AllKinds, max(runs, 200)
		}
		tester, err := campaign.New(campaign.Config{Strategy: s, Model: m, Faults: kinds, Isolation: level})
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

// LeaseSteps runs a one-message case of cfg once for each scheduling point
// of the first attempt at which its lease may expire (another consumer then
// takes the copy), and returns the result of each run in which it did.
func LeaseSteps(t *testing.T, cfg campaign.Config, msg model.Message) []checkers.Result {
	t.Helper()
	tester, err := campaign.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tester.Close() })
	var results []checkers.Result
	for step := range faults.LeaseSteps {
		p := faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Redelivery, Variant: faults.LeaseExpired, Index: step}}}
		h, res, err := tester.Execute(campaign.Case{Workload: model.Workload{msg}.Number(), Plan: p}, 1)
		require.NoError(t, err)
		if h.InjectedFaults()[string(faults.Redelivery)] > 0 {
			results = append(results, res)
		}
	}
	require.NotEmpty(t, results, "the lease expired in some run")
	return results
}

// Shows reports whether some result's anomalies include a.
func Shows(results []checkers.Result, a histories.Anomaly) bool {
	for _, res := range results {
		if slices.Contains(res.Anomalies, a) {
			return true
		}
	}
	return false
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
