package campaign

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

var soak = flag.Bool("oncecheck.soak", false, "run safe matrix cells 20,000 times instead of 500")

// TestMatrixMatchesExpectation runs every cell of the matrix for every
// model, at every isolation level, and compares it with the level's
// expectation (expected/matrix.json at read committed, the default;
// matrix-repeatable-read.json and matrix-serializable.json): a safe cell
// must pass every run (500, or 20,000 with -oncecheck.soak; a quarter at
// the other levels), an unsafe cell must show its expected anomaly within
// them.
func TestMatrixMatchesExpectation(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: make test runs it in its second step, without -race and -short")
	}
	runs := 500
	if *soak {
		runs = 20000
	}
	for _, level := range adapters.Isolations() {
		expected, err := LoadExpectedMatrix(ExpectedMatrixFile("../expected", level))
		require.NoError(t, err)
		for _, name := range builtin.ModelNames() {
			t.Run(string(level)+"/"+name, func(t *testing.T) { matrixMatches(t, expected, level, name, runs) })
		}
	}
}

func matrixMatches(t *testing.T, expected ExpectedMatrix, level adapters.Isolation, name string, runs int) {
	if level != adapters.ReadCommitted {
		runs /= 4
	}
	mx, err := RunMatrix(context.Background(), MatrixOptions{Model: mdl(name), Runs: runs, Seed: 1, Out: t.TempDir(), Isolation: level})
	require.NoError(t, err)
	require.Len(t, mx.Cells, len(builtin.StrategyNames())*len(MatrixColumns()))
	require.Empty(t, expected.Compare(mx))
	for _, c := range mx.Cells {
		if c.Verdict == histories.Violation {
			require.LessOrEqual(t, c.RunsToFailure, runs, "%s/%s found too late", c.Strategy, c.Fault)
		}
	}
}

// brokenOutbox is the outbox with its processed-id insert moved out of the
// state's transaction, into one of its own after the commit.
type brokenOutbox struct{ strategykit.StateObserver }

func (brokenOutbox) Handle(env adapters.Env, msg model.Message) error {
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, seen, err := tx.Get("processed", msg.ID); err != nil {
		return err
	} else if seen {
		return env.Ack()
	}
	outs, err := strategykit.Apply(tx, env.Model(), msg)
	if err != nil {
		return err
	}
	msgs := strategykit.OutputMessages(outs, msg, func(i int) string { return strategykit.DerivedID(msg, i) })
	if err := strategykit.StoreOutbox(tx, msg.ID, msgs); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	mark, err := env.Begin()
	if err != nil {
		return err
	}
	defer mark.Rollback()
	if err := mark.Put("processed", msg.ID, nil); err != nil {
		return err
	}
	if err := mark.Commit(); err != nil {
		return err
	}
	return env.Ack()
}

func TestABrokenOutboxTurnsItsSafeCellsRed(t *testing.T) {
	broken := adapters.Strategy{
		Name: "outbox-broken", Summary: "outbox with the processed insert outside the transaction (test only)",
		NewHandler:    func() adapters.Handler { return brokenOutbox{} },
		NewDispatcher: func() adapters.Dispatcher { return strategykit.OutboxDispatcher{} },
	}
	expected, err := LoadExpectedMatrix("../expected/matrix.json")
	require.NoError(t, err)
	mx, err := RunMatrix(context.Background(), MatrixOptions{Model: mdl("orders"), Strategies: []adapters.Strategy{strat("outbox"), broken}, Runs: 500, Seed: 1, Out: t.TempDir()})
	require.NoError(t, err)
	red := map[string]string{}
	for _, col := range mx.Columns {
		good, _ := mx.Cell("outbox", col)
		bad, _ := mx.Cell("outbox-broken", col)
		require.Empty(t, expected.Compare(&Matrix{Model: "orders", Cells: []Cell{good}}), "the real outbox keeps its expected verdict")
		if good.Verdict == histories.Pass && bad.Verdict == histories.Violation {
			red[col] = bad.Summary()
		}
	}
	require.Contains(t, red, "crash", "a crash between the two commits applies the message again")
	t.Logf("safe outbox cells the broken variant turns red: %v", red)
}

func TestExpectRoundTrips(t *testing.T) {
	mx, err := RunMatrix(context.Background(), MatrixOptions{Model: mdl("orders"), Strategies: strats("naive", "outbox"), Runs: 100, Seed: 1, Out: t.TempDir()})
	require.NoError(t, err)
	e := Expect(mx)
	require.Empty(t, e.Compare(mx))
	require.Equal(t, "pass", e["orders"]["outbox"]["crash"])
	require.Equal(t, "duplicate", e["orders"]["naive"]["crash"])
	require.Equal(t, "violation", e["orders"]["naive"]["all"])
	e["orders"]["naive"]["crash"] = "lost|ghost"
	require.Len(t, e.Compare(mx), 1)
}

// TestShrunkCounterexamplesAreSmall shrinks the counterexample of every
// unsafe cell of every model's matrix: each must have at most 4 logical
// messages and 2 faults.
func TestShrunkCounterexamplesAreSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: make test runs it in its second step, without -race and -short")
	}
	for _, name := range builtin.ModelNames() {
		t.Run(name, func(t *testing.T) {
			mx, err := RunMatrix(context.Background(), MatrixOptions{Model: mdl(name), Runs: 500, Seed: 1, Out: t.TempDir(), Shrink: true, ShrinkTime: 10 * time.Second})
			require.NoError(t, err)
			unsafe := 0
			for _, c := range mx.Cells {
				if c.Verdict != histories.Violation {
					continue
				}
				unsafe++
				h, err := histories.Load(c.History)
				require.NoError(t, err)
				require.LessOrEqual(t, len(h.Header.Workload), 4, "%s/%s: %s", c.Strategy, c.Fault, c.History)
				require.LessOrEqual(t, len(h.Header.Plan.Faults), 2, "%s/%s: %s", c.Strategy, c.Fault, c.History)
			}
			require.NotZero(t, unsafe)
		})
	}
}

// TestReissueWithCrashShrinksToTwoMessages: every strategy that fails
// under crashes and re-issues together shrinks to at most 2 messages.
func TestReissueWithCrashShrinksToTwoMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: make test runs it in its second step, without -race and -short")
	}
	for _, name := range builtin.StrategyNames() {
		tester, err := New(Config{Strategy: strat(name), Faults: []faults.Kind{faults.Crash, faults.Reissue}})
		require.NoError(t, err)
		rep, err := tester.Search(context.Background(), SearchOptions{Runs: 300, Seed: 1, Out: t.TempDir(), ShrinkTime: 10 * time.Second})
		require.NoError(t, err)
		require.NoError(t, tester.Close())
		if rep.Verdict != histories.Violation {
			continue
		}
		require.LessOrEqual(t, len(rep.Minimal.Header.Workload), 2, "%s: %s", name, rep.Path)
	}
}
