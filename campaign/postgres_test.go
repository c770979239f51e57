package campaign

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/sim"
)

// TestPostgresGivesTheVerdictsOfMemory runs the whole matrix of every
// model on both backends, at every isolation level, with the same seeds
// and fewer runs per cell (fewer still at the levels other than the
// default), and requires the same cells: verdict, anomalies and the run
// that found them.
func TestPostgresGivesTheVerdictsOfMemory(t *testing.T) {
	dsn := pgtest.DSN(t)
	if testing.Short() {
		t.Skip("heavy: make test runs it in its second step, without -race and -short")
	}
	for _, level := range adapters.Isolations() {
		for _, name := range builtin.ModelNames() {
			t.Run(string(level)+"/"+name, func(t *testing.T) { samePostgresMatrix(t, dsn, level, name) })
		}
	}
}

func samePostgresMatrix(t *testing.T, dsn string, level adapters.Isolation, name string) {
	runs := 12
	if level != adapters.ReadCommitted {
		runs = 4
	}
	o := MatrixOptions{Model: mdl(name), Runs: runs, Seed: 1, Out: t.TempDir(), Isolation: level}
	mem, err := RunMatrix(context.Background(), o)
	require.NoError(t, err)
	o.Backend = pgstore.Backend{DSN: dsn}
	pg, err := RunMatrix(context.Background(), o)
	require.NoError(t, err)
	require.Equal(t, len(mem.Cells), len(pg.Cells))
	for i, m := range mem.Cells {
		p := pg.Cells[i]
		require.Equal(t, m.Summary(), p.Summary(), "%s/%s", m.Strategy, m.Fault)
		require.Equal(t, m.RunsToFailure, p.RunsToFailure, "%s/%s", m.Strategy, m.Fault)
		require.NotEqual(t, histories.Inconclusive, p.Verdict, p.Reason)
	}
}

// TestEveryCrashPointOnPostgres crashes each strategy at every point its
// runs offer (two messages to one order), on Postgres and in memory: each
// crash must happen, leave a checkable history, and give the same events
// and verdict on both backends.
func TestEveryCrashPointOnPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	w := model.Workload{
		{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
		{Aggregate: "o1", Type: model.Confirm, Payload: []byte(`{}`)},
	}.Number()
	for _, name := range builtin.StrategyNames() {
		t.Run(name, func(t *testing.T) {
			mem, err := New(Config{Strategy: strat(name), Faults: []faults.Kind{faults.Crash}})
			require.NoError(t, err)
			pg, err := New(Config{Strategy: strat(name), Faults: []faults.Kind{faults.Crash}, Backend: pgstore.Backend{DSN: dsn}})
			require.NoError(t, err)
			defer pg.Close()
			var opps []sim.Opportunity
			_, err = mem.simulate(sim.Config{Model: mem.model, Strategy: mem.cfg.Strategy, Workload: w, Explore: []faults.Kind{faults.Crash}}, &opps)
			require.NoError(t, err)
			var points []faults.Point
			for _, op := range opps {
				c := Case{Workload: w, Plan: faults.Plan{Faults: []faults.Fault{op.Fault}}}
				hm, rm, err := mem.Execute(c, 0)
				require.NoError(t, err)
				hp, rp, err := pg.Execute(c, 0)
				require.NoError(t, err, "%s on postgres", op.Fault)
				require.Equal(t, hm.Hash(), hp.Hash(), "%s: same events on both backends", op.Fault)
				require.Equal(t, rm.Signature(), rp.Signature(), op.Fault.String())
				if !slices.Contains(points, op.Fault.Point) {
					points = append(points, op.Fault.Point)
				}
			}
			for _, p := range []faults.Point{faults.BeforeHandle, faults.AfterBegin, faults.AfterWrite, faults.BeforeCommit, faults.AfterCommit, faults.BeforeAck} {
				require.Contains(t, points, p, "%s never reaches %s", name, p)
			}
		})
	}
}

func TestPostgresNeedsADSN(t *testing.T) {
	t.Setenv(pgstore.DSNEnv, "")
	_, err := New(Config{Strategy: strat("naive"), Backend: pgstore.Backend{}})
	require.ErrorIs(t, err, adapters.ErrNoServer)
	require.ErrorContains(t, err, "set $ONCECHECK_PG to a PostgreSQL DSN")
}
