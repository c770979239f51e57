package oncecheck

import (
	"context"
	"testing"

	"github.com/oncecheck/oncecheck/adapters/dedup"
	"github.com/oncecheck/oncecheck/adapters/dedupmarkfirst"
	"github.com/oncecheck/oncecheck/adapters/naive"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
	"github.com/stretchr/testify/require"
)

func TestNaiveRedeliveryShrinksToASmallReplayableCounterexample(t *testing.T) {
	tester, err := campaign.New(campaign.Config{Strategy: naive.Strategy(), Faults: []faults.Kind{faults.Redelivery}})
	require.NoError(t, err)
	rep, err := tester.Search(context.Background(), campaign.SearchOptions{Runs: 200, Seed: 99, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, rep.Verdict)
	require.NoError(t, rep.ShrinkError)
	require.LessOrEqual(t, len(rep.Minimal.Header.Workload), 3)
	require.Len(t, rep.Minimal.Header.Plan.Faults, 1)
	require.Contains(t, rep.Result.Anomalies, histories.Duplicate)

	// The saved file checks offline to the same verdict...
	saved, err := histories.Load(rep.Path)
	require.NoError(t, err)
	res, err := Check(saved, CheckOptions{})
	require.NoError(t, err)
	require.Equal(t, rep.Result.Signature(), res.Signature())
	require.Equal(t, rep.Result.Findings, res.Findings)

	// ...and replays event for event.
	replayed, res, err := Replay(saved, ReplayOptions{})
	require.NoError(t, err)
	require.Equal(t, saved.Events, replayed.Events)
	require.Equal(t, rep.Result.Signature(), res.Signature())
}

func TestReplayOnAnotherStrategy(t *testing.T) {
	tester, err := campaign.New(campaign.Config{Strategy: dedup.Strategy(), Faults: []faults.Kind{faults.Crash}})
	require.NoError(t, err)
	rep, err := tester.Search(context.Background(), campaign.SearchOptions{Runs: 500, Seed: 5, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, rep.Verdict)
	_, res, err := Replay(rep.Minimal, ReplayOptions{Strategy: "outbox"})
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict, "the outbox survives the dedup counterexample")
}

// TestAHistoryPreemptedAtAReadReplaysEventForEvent: a history saved with
// reads as preemption points (format 1.2) says so in its header, and its
// replay schedules the same way, event for event.
func TestAHistoryPreemptedAtAReadReplaysEventForEvent(t *testing.T) {
	tester, err := campaign.New(campaign.Config{Strategy: dedupmarkfirst.Strategy(), Faults: []faults.Kind{faults.Concurrent}})
	require.NoError(t, err)
	rep, err := tester.Search(context.Background(), campaign.SearchOptions{Runs: 300, Seed: 1, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, rep.Verdict)
	saved, err := histories.Load(rep.Path)
	require.NoError(t, err)
	require.True(t, saved.Header.ReadsPreempt)
	require.Equal(t, histories.Version, saved.Header.Version)
	replayed, _, err := Replay(saved, ReplayOptions{})
	require.NoError(t, err)
	require.Equal(t, saved.Events, replayed.Events)
}

// TestAHistoryCutShortWhileObservingIsInconclusive: a run whose backend
// failed while it read the final states saved some observations, not all;
// checked again, it is inconclusive, as it was, not malformed.
func TestAHistoryCutShortWhileObservingIsInconclusive(t *testing.T) {
	add := func(id, key, agg string) *model.Message {
		return &model.Message{ID: id, Key: key, Aggregate: agg, Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}
	}
	h := &histories.History{
		Header: histories.Header{Format: histories.Format, Version: histories.Version, Model: "orders", Strategy: "naive",
			Backend: "pg", Verdict: histories.Inconclusive},
		Events: []histories.Event{
			{Step: 1, Kind: histories.Send, Process: "sender", Message: add("m1", "k1", "o1")},
			{Step: 2, Kind: histories.Send, Process: "sender", Message: add("m2", "k2", "o2")},
			{Step: 3, Kind: histories.Observe, Process: "observer", Aggregate: "o1", State: model.State(`{"confirmed":false,"lines":{}}`)},
		},
	}
	res, err := Check(h, CheckOptions{})
	require.NoError(t, err)
	require.Equal(t, histories.Inconclusive, res.Verdict)
	require.Contains(t, res.Reason, "cut short")
}
