package campaign

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

func TestSameSeedSameHistory(t *testing.T) {
	tester, err := New(Config{Strategy: strat("outbox")})
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

func TestConfigErrorsNameTheirField(t *testing.T) {
	_, err := New(Config{Strategy: adapters.Strategy{Name: "nothing"}})
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "Strategy", ce.Field)
	_, err = New(Config{Strategy: strat("naive"), MaxMessages: -1})
	require.ErrorAs(t, err, &ce)
	require.Equal(t, &ConfigError{Field: "MaxMessages", Problem: "must be at least 1, not -1"}, ce)
	require.NotContains(t, err.Error(), "--", "a library error names no flag")
	_, err = New(Config{Strategy: strat("naive"), Consumers: 3})
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "Consumers", ce.Field)
}

func TestAStrategyThatDoesNotApplyIsUnsupported(t *testing.T) {
	_, err := New(Config{Model: mdl("accounts"), Strategy: strat("state-based")})
	var unsupported *adapters.UnsupportedError
	require.ErrorAs(t, err, &unsupported)
}

func TestCancelledSearchStopsEarly(t *testing.T) {
	tester, err := New(Config{Strategy: strat("outbox"), Faults: []faults.Kind{faults.Crash}})
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
		tester, err := New(Config{Strategy: strat(c.strategy), Faults: c.kinds})
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
