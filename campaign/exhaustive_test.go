package campaign

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestExhaustiveFindsTheSameUnsafeCellsAsRandom compares, on the orders
// model, the exhaustive mode (every placement of one fault over every
// workload shape of up to 3 messages) with the random mode: each fault kind
// alone, every strategy. Every cell the random mode finds unsafe with up to
// 3 messages (500 runs) must be unsafe exhaustively, with a counterexample
// of at most 3 messages and 1 fault; and every cell the exhaustive mode
// finds unsafe must be unsafe in the committed matrix (random mode, up to 8
// messages). A cell unsafe exhaustively but safe in the matrix would be a
// bug the random mode misses.
func TestExhaustiveFindsTheSameUnsafeCellsAsRandom(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: make test runs it in its second step, without -race and -short")
	}
	expected, err := LoadExpectedMatrix("../expected/matrix.json")
	require.NoError(t, err)
	var columns []string
	for _, k := range faults.AllKinds {
		columns = append(columns, string(k))
	}
	random, err := RunMatrix(context.Background(), MatrixOptions{Model: mdl("orders"), Columns: columns, Runs: 500, MaxMessages: 3, Seed: 1, Out: t.TempDir()})
	require.NoError(t, err)
	schedules := 0
	var onlyExhaustive []string
	for _, c := range random.Cells {
		tester, err := New(Config{Model: mdl("orders"), Strategy: strat(c.Strategy), Faults: []faults.Kind{faults.Kind(c.Fault)}})
		require.NoError(t, err)
		rep, err := tester.Exhaustive(context.Background(), ExhaustiveOptions{MaxMessages: 3, MaxFaults: 1, Out: t.TempDir()})
		require.NoError(t, err)
		schedules += rep.Schedules
		require.NotEqual(t, histories.Inconclusive, rep.Verdict, rep.Reason)
		want := expected["orders"][c.Strategy][c.Fault]
		if rep.Verdict == histories.Pass {
			require.Equal(t, histories.Pass, c.Verdict, "%s/%s: random found %s, exhaustive nothing", c.Strategy, c.Fault, c.Summary())
			require.Equal(t, "pass", want, "%s/%s: the matrix expects %s", c.Strategy, c.Fault, want)
			require.Equal(t, 384, rep.Workloads, "a safe cell explores every workload shape")
			continue
		}
		require.NotEqual(t, "pass", want, "%s/%s: exhaustive found %v, which the random matrix misses", c.Strategy, c.Fault, rep.Result.Anomalies)
		require.LessOrEqual(t, len(rep.History.Header.Workload), 3)
		require.LessOrEqual(t, len(rep.History.Header.Plan.Faults), 1)
		require.FileExists(t, rep.Path)
		if c.Verdict == histories.Pass {
			onlyExhaustive = append(onlyExhaustive, c.Strategy+"/"+c.Fault)
		}
	}
	t.Logf("exhaustive mode explored %d schedules over %d cells; unsafe cells the random mode at 3 messages missed in 500 runs: %v",
		schedules, len(random.Cells), onlyExhaustive)
}

func TestExhaustivePrunesEquivalentSchedules(t *testing.T) {
	tester, err := New(Config{Model: mdl("orders"), Strategy: strat("outbox"), Faults: []faults.Kind{faults.Crash}})
	require.NoError(t, err)
	one, err := tester.Exhaustive(context.Background(), ExhaustiveOptions{MaxMessages: 2, MaxFaults: 1, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Pass, one.Verdict)
	require.Equal(t, 29, one.Workloads)
	require.NotZero(t, one.Equivalent, "crashes with nothing in between give one schedule")
	require.Equal(t, one.Schedules, one.Checked+one.Equivalent)

	// The count is a pure function of the configuration.
	again, err := tester.Exhaustive(context.Background(), ExhaustiveOptions{MaxMessages: 2, MaxFaults: 1, Out: t.TempDir(), Parallel: 1})
	require.NoError(t, err)
	require.Equal(t, one, again)
}

func TestExhaustiveNeedsAnEnumerableModel(t *testing.T) {
	tester, err := New(Config{Model: mdl("orders"), Strategy: strat("naive")})
	require.NoError(t, err)
	tester.model = notEnumerable{tester.model}
	_, err = tester.Exhaustive(context.Background(), ExhaustiveOptions{})
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "Model", ce.Field)
}

type notEnumerable struct{ model.Model }
