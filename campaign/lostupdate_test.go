package campaign

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/memstore"
	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
)

// readModifyWrite applies a message the way many services do: it reads the
// aggregate's state, changes it and writes it back, in one transaction,
// then publishes and acks. With locked, the read takes the row's lock and
// a missing row is created with a unique insert (strategykit.Apply);
// without, it is a plain read and an upsert: under read committed, two
// consumers that read the same state both write, and one change is lost.
type readModifyWrite struct {
	strategykit.StateObserver
	locked bool
}

func (h readModifyWrite) Handle(env adapters.Env, msg model.Message) error {
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var outs model.Outputs
	if h.locked {
		outs, err = strategykit.Apply(tx, env.Model(), msg)
	} else {
		outs, err = h.unlocked(tx, env.Model(), msg)
	}
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if err := env.Publish(strategykit.OutputMessages(outs, msg, func(i int) string { return strategykit.KeyDerivedID(msg, i) })...); err != nil {
		return err
	}
	return env.Ack()
}

func (readModifyWrite) unlocked(tx adapters.Tx, m model.Model, msg model.Message) (model.Outputs, error) {
	st := m.Initial(msg.Aggregate)
	v, ok, err := tx.Get(strategykit.StateTable, msg.Aggregate)
	if err != nil {
		return nil, err
	}
	if ok {
		st = v
	}
	next, outs, err := m.Apply(st, msg)
	if err != nil {
		return nil, err
	}
	return outs, strategykit.SaveState(tx, msg.Aggregate, next)
}

func readModifyWriteStrategy(locked bool) adapters.Strategy {
	name := "read-modify-write"
	if locked {
		name += "-for-update"
	}
	return adapters.Strategy{Name: name, NewHandler: func() adapters.Handler { return readModifyWrite{locked: locked} }}
}

// TestALostUpdateIsFoundAtReadCommitted: the unlocked read-modify-write,
// with competing consumers, fails at read committed (the default) on both
// backends within 300 runs, shrinks to at most 3 messages, its finding
// names the lost update (which message's change the other overwrote), and
// its saved history replays event for event.
func TestALostUpdateIsFoundAtReadCommitted(t *testing.T) {
	backends := []adapters.Backend{memstore.Backend{}}
	if !testing.Short() {
		backends = append(backends, pgstore.Backend{DSN: pgtest.DSN(t)})
	}
	for _, b := range backends {
		t.Run(b.Name(), func(t *testing.T) {
			tester, err := New(Config{Strategy: readModifyWriteStrategy(false), Backend: b, Faults: []faults.Kind{faults.Concurrent}})
			require.NoError(t, err)
			defer tester.Close()
			rep, err := tester.Search(context.Background(), SearchOptions{Runs: 300, Seed: 1, Out: t.TempDir()})
			require.NoError(t, err)
			require.Equal(t, histories.Violation, rep.Verdict)
			require.Equal(t, histories.Lost, rep.Result.Primary(), "%v", rep.Result.Findings)
			lost := rep.Result.Findings[0]
			require.Len(t, lost.Keys, 2, "the overwritten message and the overwriting one: %s", lost.Text)
			require.Contains(t, lost.Text, "; a lost update: "+lost.Keys[1]+"'s transaction (tx")
			require.Contains(t, lost.Text, "over "+lost.Keys[0]+"'s change")
			require.LessOrEqual(t, len(rep.Minimal.Header.Workload), 3)
			require.Equal(t, adapters.ReadCommitted, adapters.Isolation(rep.Minimal.Header.Isolation))

			saved, err := histories.Load(rep.Path)
			require.NoError(t, err)
			again, res, err := tester.Execute(Case{Workload: saved.Header.Workload, Plan: saved.Header.Plan}, saved.Header.Seed)
			require.NoError(t, err)
			require.Equal(t, histories.Violation, res.Verdict)
			require.Zero(t, histories.FirstDifference(saved.Events, again.Events), "the saved history replays event for event")
		})
	}
}

// TestTheLockedReadModifyWritePassesAtEveryLevel: the same handler with
// the row locked from its read on passes 2,000 runs at every level (in
// memory; fewer on PostgreSQL, at the default level).
func TestTheLockedReadModifyWritePassesAtEveryLevel(t *testing.T) {
	runs := 2000
	if testing.Short() {
		runs = 400
	}
	for _, level := range adapters.Isolations() {
		t.Run(string(level), func(t *testing.T) {
			tester, err := New(Config{Strategy: readModifyWriteStrategy(true), Isolation: level, Faults: []faults.Kind{faults.Concurrent}})
			require.NoError(t, err)
			defer tester.Close()
			rep, err := tester.Search(context.Background(), SearchOptions{Runs: runs, Seed: 1, Out: t.TempDir(), Parallel: 2})
			require.NoError(t, err)
			require.Equal(t, histories.Pass, rep.Verdict, "%v", rep.Result.Findings)
		})
	}
	if testing.Short() {
		return
	}
	t.Run("pg", func(t *testing.T) {
		tester, err := New(Config{Strategy: readModifyWriteStrategy(true), Backend: pgstore.Backend{DSN: pgtest.DSN(t)}, Faults: []faults.Kind{faults.Concurrent}})
		require.NoError(t, err)
		defer tester.Close()
		rep, err := tester.Search(context.Background(), SearchOptions{Runs: 200, Seed: 1, Out: t.TempDir()})
		require.NoError(t, err)
		require.Equal(t, histories.Pass, rep.Verdict, "%v", rep.Result.Findings)
	})
}

// TestTheUnlockedReadModifyWritePassesAtRepeatableRead: the lost update
// needs read committed; at repeatable read and serializable the later
// writer fails to serialize and retries on the new state.
func TestTheUnlockedReadModifyWritePassesAtRepeatableRead(t *testing.T) {
	for _, level := range []adapters.Isolation{adapters.RepeatableRead, adapters.Serializable} {
		tester, err := New(Config{Strategy: readModifyWriteStrategy(false), Isolation: level, Faults: []faults.Kind{faults.Concurrent}})
		require.NoError(t, err)
		rep, err := tester.Search(context.Background(), SearchOptions{Runs: 500, Seed: 1, Out: t.TempDir(), Parallel: 2})
		require.NoError(t, err)
		require.NoError(t, tester.Close())
		require.Equal(t, histories.Pass, rep.Verdict, "%s: %v", level, rep.Result.Findings)
	}
}
