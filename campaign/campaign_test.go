package campaign

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
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

// TestRetargetFollowsTheDeliveries: dropping a message moves the faults
// pinned to later deliveries down by its deliveries, moves one pinned to
// its own delivery to the next, renumbers a re-issue, and leaves
// boundaries and dispatcher passes alone.
func TestRetargetFollowsTheDeliveries(t *testing.T) {
	deliver := func(attempt int, key string) histories.Event {
		return histories.Event{Kind: histories.Deliver, Attempt: attempt, Message: &model.Message{Key: key}}
	}
	// Deliveries: #1 k1, #2 k2, #3 k2 (again), #4 k3.
	h := &histories.History{Events: []histories.Event{deliver(1, "k1"), deliver(2, "k2"), deliver(3, "k2"), deliver(4, "k3")}}
	p := faults.Plan{Consumers: 2, Faults: []faults.Fault{
		{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.AfterCommit},
		{Kind: faults.Crash, Process: faults.Consumer, At: 2, Point: faults.AfterCommit},
		{Kind: faults.Redelivery, At: 3},
		{Kind: faults.Reissue, At: 3, Index: 2},
		{Kind: faults.Reissue, At: 0, Index: 1},
		{Kind: faults.Concurrent, At: 9},
		{Kind: faults.Crash, Process: faults.Dispatcher, At: 3, Point: faults.AfterPublish},
	}}
	moved, ok := retarget(p, h, "k2", 1)
	require.True(t, ok)
	require.Equal(t, faults.Plan{Consumers: 2, Faults: []faults.Fault{
		{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.AfterCommit},
		{Kind: faults.Crash, Process: faults.Consumer, At: 1, Point: faults.AfterCommit}, // k2's second delivery: now k3's
		{Kind: faults.Redelivery, At: 1},
		{Kind: faults.Reissue, At: 1, Index: 1},
		{Kind: faults.Concurrent, At: 9},
		{Kind: faults.Crash, Process: faults.Dispatcher, At: 3, Point: faults.AfterPublish},
	}}, moved)
	_, ok = retarget(faults.Plan{Faults: []faults.Fault{{Kind: faults.Redelivery, At: 0}}}, h, "k3", 2)
	require.False(t, ok, "nothing before delivery #1 is dropped")
}

// TestAnUnwritableOutIsRefusedBeforeTheCampaign: a results directory that
// cannot take a file is a configuration error, before any run.
func TestAnUnwritableOutIsRefusedBeforeTheCampaign(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	tester, err := New(Config{Strategy: strat("naive")})
	require.NoError(t, err)
	runs := 0
	_, err = tester.Search(context.Background(), SearchOptions{Runs: 10, Out: file, Progress: func(int, int) { runs++ }})
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "Out", ce.Field)
	require.Zero(t, runs)
	_, err = RunMatrix(context.Background(), MatrixOptions{Strategies: strats("naive"), Runs: 1, Out: file})
	require.ErrorAs(t, err, &ce)
}

// TestAFailedSaveKeepsTheFinding: when the counterexample cannot be saved
// (here the results directory is replaced by a file during the campaign),
// the report still has the violation, the minimal history and its
// explanation, says why it was not saved where asked, and saved it in
// the fallback directory.
func TestAFailedSaveKeepsTheFinding(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	out := filepath.Join(t.TempDir(), "results")
	tester, err := New(Config{Strategy: strat("naive"), Faults: []faults.Kind{faults.Redelivery}})
	require.NoError(t, err)
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 200, Seed: 99, Out: out, NoShrink: true, Progress: func(done, _ int) {
		if done == 1 {
			require.NoError(t, os.RemoveAll(out))
			require.NoError(t, os.WriteFile(out, nil, 0o644))
		}
	}})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, rep.Verdict)
	require.NotNil(t, rep.Minimal)
	require.NotEmpty(t, rep.Result.Findings)
	require.Error(t, rep.SaveError)
	require.Equal(t, FallbackDir(), filepath.Dir(rep.Path))
	h, err := histories.Load(rep.Path)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, h.Header.Verdict)
}

// TestStaleTemporaryFilesAreRemoved: a temporary file that a killed save
// left is removed by the next campaign once it is a minute old; a fresh
// one (a live writer's) stays. Histories are saved mode 0644.
func TestStaleTemporaryFilesAreRemoved(t *testing.T) {
	out := t.TempDir()
	stale, fresh := filepath.Join(out, ".tmp-x.jsonl-1"), filepath.Join(out, ".tmp-y.jsonl-2")
	require.NoError(t, os.WriteFile(stale, []byte("{"), 0o600))
	require.NoError(t, os.WriteFile(fresh, []byte("{"), 0o600))
	old := time.Now().Add(-2 * time.Minute)
	require.NoError(t, os.Chtimes(stale, old, old))
	matches, err := filepath.Glob(filepath.Join(out, "*.jsonl"))
	require.NoError(t, err)
	require.Empty(t, matches, "no glob of histories matches a temporary file")
	tester, err := New(Config{Strategy: strat("naive"), Faults: []faults.Kind{faults.Redelivery}})
	require.NoError(t, err)
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 200, Seed: 99, Out: out, NoShrink: true})
	require.NoError(t, err)
	require.NoFileExists(t, stale)
	require.FileExists(t, fresh)
	info, err := os.Stat(rep.Path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), info.Mode().Perm())
}
