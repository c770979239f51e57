package oncecheck

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

// expectedVerdicts is what each built-in strategy must give under each
// fault kind: "" means every one of 500 runs passes; an anomaly means a
// violation showing it is found within 500 runs.
var expectedVerdicts = []struct {
	strategy string
	fault    faults.Kind
	anomaly  checkers.Anomaly
}{
	{"naive", faults.Redelivery, checkers.Duplicate},
	{"naive", faults.Crash, checkers.Duplicate},
	{"dedup", faults.Redelivery, ""},
	{"dedup", faults.Crash, checkers.Lost},
	{"outbox", faults.Redelivery, ""},
	{"outbox", faults.Crash, ""},
}

func TestStrategiesGiveTheirExpectedVerdicts(t *testing.T) {
	for _, c := range expectedVerdicts {
		t.Run(c.strategy+"/"+string(c.fault), func(t *testing.T) {
			t.Parallel()
			tester, err := New(Config{Strategy: c.strategy, Faults: []faults.Kind{c.fault}})
			require.NoError(t, err)
			rep, err := tester.Search(context.Background(), SearchOptions{Runs: 500, Seed: 1, Out: t.TempDir(), ShrinkTime: 5 * time.Second})
			require.NoError(t, err)
			if c.anomaly == "" {
				require.Equal(t, checkers.Pass, rep.Verdict, "%v", rep.Result.Findings)
				require.Equal(t, 500, rep.Runs)
				require.NotZero(t, rep.Injected[c.fault], "faults were injected")
				return
			}
			require.Equal(t, checkers.Violation, rep.Verdict)
			require.Contains(t, rep.Result.Anomalies, c.anomaly)
			require.NoError(t, rep.ShrinkError)
			require.FileExists(t, rep.Path)
		})
	}
}

func TestNaiveRedeliveryShrinksToASmallReplayableCounterexample(t *testing.T) {
	tester, err := New(Config{Strategy: "naive", Faults: []faults.Kind{faults.Redelivery}})
	require.NoError(t, err)
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 200, Seed: 99, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, checkers.Violation, rep.Verdict)
	require.NoError(t, rep.ShrinkError)
	require.LessOrEqual(t, len(rep.Minimal.Header.Workload), 3)
	require.Len(t, rep.Minimal.Header.Plan.Faults, 1)
	require.Contains(t, rep.Result.Anomalies, checkers.Duplicate)

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
	require.Equal(t, checkers.Violation, rep.Verdict)
	_, res, err := Replay(rep.Minimal, "outbox")
	require.NoError(t, err)
	require.Equal(t, checkers.Pass, res.Verdict, "the outbox survives the dedup counterexample")
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
	tester, err := New(Config{Strategy: "outbox"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	rep, err := tester.Search(ctx, SearchOptions{Runs: 1000, Out: t.TempDir(), Progress: func(done, _ int) {
		if done == 10 {
			cancel()
		}
	}})
	require.NoError(t, err)
	require.Equal(t, 10, rep.Runs)
	require.Equal(t, checkers.Pass, rep.Verdict)
}
