package oncecheck

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

func TestNaiveRedeliveryShrinksToASmallReplayableCounterexample(t *testing.T) {
	tester, err := New(Config{Strategy: "naive", Faults: []faults.Kind{faults.Redelivery}})
	require.NoError(t, err)
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 200, Seed: 99, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, rep.Verdict)
	require.NoError(t, rep.ShrinkError)
	require.LessOrEqual(t, len(rep.Minimal.Header.Workload), 3)
	require.Len(t, rep.Minimal.Header.Plan.Faults, 1)
	require.Contains(t, rep.Result.Anomalies, histories.Duplicate)

	// The saved file checks offline to the same verdict...
	saved, err := histories.Load(rep.Path)
	require.NoError(t, err)
	res, err := Check(saved, "", 0)
	require.NoError(t, err)
	require.Equal(t, rep.Result.Signature(), res.Signature())
	require.Equal(t, rep.Result.Findings, res.Findings)

	// ...and replays event for event.
	replayed, res, err := Replay(saved, "")
	require.NoError(t, err)
	require.Equal(t, saved.Events, replayed.Events)
	require.Equal(t, rep.Result.Signature(), res.Signature())
}

func TestReplayOnAnotherStrategy(t *testing.T) {
	tester, err := New(Config{Strategy: "dedup", Faults: []faults.Kind{faults.Crash}})
	require.NoError(t, err)
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 500, Seed: 5, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, rep.Verdict)
	_, res, err := Replay(rep.Minimal, "outbox")
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict, "the outbox survives the dedup counterexample")
}

func TestSameSeedSameHistory(t *testing.T) {
	tester, err := New(Config{Strategy: "outbox"})
	require.NoError(t, err)
	for seed := uint64(0); seed < 50; seed++ {
		a, _, err := tester.Execute(tester.Generate(seed), seed)
		require.NoError(t, err)
		b, _, err := tester.Execute(tester.Generate(seed), seed)
		require.NoError(t, err)
		require.Equal(t, a.Hash(), b.Hash())
		require.Equal(t, a.Header, b.Header)
	}
}

func TestUsageErrors(t *testing.T) {
	_, err := New(Config{Strategy: "nope"})
	require.ErrorIs(t, err, ErrUsage)
	require.ErrorContains(t, err, `unknown strategy "nope"`)
	_, err = New(Config{Strategy: "naive", Model: "bank"})
	require.ErrorIs(t, err, ErrUsage)
	_, err = New(Config{Strategy: "naive", Backend: "oracle"})
	require.ErrorIs(t, err, ErrUsage)
}

func TestCancelledSearchStopsEarly(t *testing.T) {
	tester, err := New(Config{Strategy: "outbox", Faults: []faults.Kind{faults.Crash}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	rep, err := tester.Search(ctx, SearchOptions{Runs: 1000, Out: t.TempDir(), Progress: func(done, _ int) {
		if done == 10 {
			cancel()
		}
	}})
	require.NoError(t, err)
	require.Equal(t, 10, rep.Runs)
	require.Equal(t, histories.Pass, rep.Verdict)
}

// TestParallelSearchIsTheSerialSearch runs the same campaigns serially and
// on four workers: same verdict, runs, failing seed, faults and saved
// history.
func TestParallelSearchIsTheSerialSearch(t *testing.T) {
	for _, c := range []struct {
		strategy string
		kinds    []faults.Kind
	}{
		{"outbox", []faults.Kind{faults.Crash, faults.Redelivery}},
		{"dedup", []faults.Kind{faults.Crash}},
		{"sequence", faults.AllKinds},
	} {
		tester, err := New(Config{Strategy: c.strategy, Faults: c.kinds})
		require.NoError(t, err)
		search := func(parallel int) Report {
			rep, err := tester.Search(context.Background(), SearchOptions{Runs: 400, Seed: 3, Out: t.TempDir(), Parallel: parallel, NoShrink: true})
			require.NoError(t, err)
			return rep
		}
		serial, parallel := search(1), search(4)
		require.Equal(t, serial.Verdict, parallel.Verdict, c.strategy)
		require.Equal(t, serial.Runs, parallel.Runs, c.strategy)
		require.Equal(t, serial.FailingSeed, parallel.FailingSeed, c.strategy)
		require.Equal(t, serial.Injected, parallel.Injected, c.strategy)
		if serial.Minimal != nil {
			require.Equal(t, serial.Minimal.Hash(), parallel.Minimal.Hash(), c.strategy)
		}
	}
}
