package campaign

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
)

// concurrency measures what a free-running campaign's histories show: how
// many had two attempts running at once, and how many transactions the
// store refused as conflicts (serialization failures, lock timeouts).
func concurrency(t *testing.T, dir string) (overlapping, conflicts int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		h, err := histories.Load(f)
		require.NoError(t, err)
		require.True(t, h.Header.FreeRunning, f)
		running, most := map[int]bool{}, 0
		for _, ev := range h.Events {
			switch {
			case ev.Kind == histories.Deliver:
				running[ev.Attempt] = true
			case (ev.Kind == histories.Done || ev.Kind == histories.Crash) && ev.Attempt != 0:
				delete(running, ev.Attempt)
			}
			most = max(most, len(running))
			if strings.Contains(ev.Detail, "conflict") {
				conflicts++
			}
		}
		if most > 1 {
			overlapping++
		}
	}
	return overlapping, conflicts
}

// TestFreeRunningOnPostgres runs competing consumers truly in parallel on
// PostgreSQL: the strategies the matrix calls safe under crashes,
// redeliveries and competing consumers stay safe, the runs do overlap and
// do meet real conflicts (each a nack and a redelivery), and a strategy
// that is not safe is still caught.
func TestFreeRunningOnPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	kinds := []faults.Kind{faults.Crash, faults.Redelivery, faults.Concurrent}
	runs := 40
	if testing.Short() {
		runs = 15
	}
	overlapping, conflicts := 0, 0
	for _, strategy := range []string{"outbox", "reservation"} {
		tester, err := New(Config{Strategy: strat(strategy), Backend: pgstore.Backend{DSN: dsn}, Faults: kinds, FreeRunning: true, Consumers: 4})
		require.NoError(t, err)
		dir := t.TempDir()
		rep, err := tester.Search(context.Background(), SearchOptions{Runs: runs, Seed: 3, Out: dir, KeepAll: true})
		require.NoError(t, tester.Close())
		require.NoError(t, err)
		require.Equal(t, histories.Pass, rep.Verdict, "%s free-running: %s %v", strategy, rep.Reason, rep.Result.Findings)
		o, c := concurrency(t, dir)
		overlapping, conflicts = overlapping+o, conflicts+c
	}
	require.Positive(t, overlapping, "attempts ran at the same time")
	require.Positive(t, conflicts, "and met in the database")

	tester, err := New(Config{Strategy: strat("naive"), Backend: pgstore.Backend{DSN: dsn}, Faults: []faults.Kind{faults.Redelivery}, FreeRunning: true})
	require.NoError(t, err)
	defer tester.Close()
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 100, Seed: 3, Out: t.TempDir(), NoShrink: true})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, rep.Verdict)
	require.Contains(t, rep.Result.Anomalies, histories.Duplicate)
	require.True(t, rep.Minimal.Header.FreeRunning)
}

// TestFreeRunningInMemory is the same mode on the in-memory store (under
// the race detector in make test's first step).
func TestFreeRunningInMemory(t *testing.T) {
	tester, err := New(Config{Strategy: strat("outbox"), Faults: []faults.Kind{faults.Crash, faults.Redelivery}, FreeRunning: true})
	require.NoError(t, err)
	dir := t.TempDir()
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 40, Seed: 1, Out: dir, KeepAll: true})
	require.NoError(t, err)
	require.Equal(t, histories.Pass, rep.Verdict, "%s %v", rep.Reason, rep.Result.Findings)
	overlapping, _ := concurrency(t, dir)
	require.Positive(t, overlapping)

	_, err = tester.Search(context.Background(), SearchOptions{Runs: 1, CheckDeterminism: true, Out: dir})
	var ce *ConfigError
	require.ErrorAs(t, err, &ce, "a free-running run cannot be checked for determinism")
	require.Equal(t, "CheckDeterminism", ce.Field)
	_, err = New(Config{Strategy: strat("outbox"), Consumers: 3})
	require.ErrorAs(t, err, &ce, "Consumers belongs to FreeRunning")
	require.Equal(t, "Consumers", ce.Field)
}
