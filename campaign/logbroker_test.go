package campaign

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/sim"
)

// logMatrixRuns is the runs per cell of the log broker's expected matrix
// (expected/matrix-log.json was recorded with them, seed 1): fewer than
// the queue's 500, to keep make test short.
const logMatrixRuns = 200

// TestLogMatrixMatchesExpectation runs every cell of the matrix on the log
// broker, for every model, and compares it with expected/matrix-log.json:
// a safe cell passes its 200 runs, an unsafe one shows its expected
// anomaly within them.
func TestLogMatrixMatchesExpectation(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: make test runs it in its second step, without -race and -short")
	}
	file := ExpectedBrokerMatrixFile("../expected", adapters.ReadCommitted, sim.BrokerLog)
	require.Equal(t, "../expected/matrix-log.json", file)
	expected, err := LoadExpectedMatrix(file)
	require.NoError(t, err)
	for _, name := range builtin.ModelNames() {
		t.Run(name, func(t *testing.T) {
			mx, err := RunMatrix(context.Background(), MatrixOptions{Model: mdl(name), Runs: logMatrixRuns, Seed: 1, Out: t.TempDir(), Broker: sim.BrokerLog})
			require.NoError(t, err)
			require.Equal(t, sim.BrokerLog, mx.Broker)
			require.Len(t, mx.Cells, len(builtin.StrategyNames())*len(MatrixColumns()))
			require.Empty(t, expected.Compare(mx))
		})
	}
}

func TestExpectedBrokerMatrixFile(t *testing.T) {
	require.Equal(t, "e/matrix.json", ExpectedBrokerMatrixFile("e", "", ""))
	require.Equal(t, "e/matrix-serializable.json", ExpectedBrokerMatrixFile("e", adapters.Serializable, sim.BrokerQueue))
	require.Equal(t, "e/matrix-log.json", ExpectedBrokerMatrixFile("e", adapters.ReadCommitted, sim.BrokerLog))
	require.Equal(t, "e/matrix-log-repeatable-read.json", ExpectedBrokerMatrixFile("e", adapters.RepeatableRead, sim.BrokerLog))
}

// A log broker's history names its broker in the header, survives a save
// and a load, and runs again event for event; a queue history's header
// has no broker field at all, as before the log broker existed.
func TestLogHistoryNamesItsBrokerAndReplays(t *testing.T) {
	tester, err := New(Config{Strategy: strat("naive"), Faults: []faults.Kind{faults.Crash, faults.Redelivery}, Broker: sim.BrokerLog})
	require.NoError(t, err)
	defer tester.Close()
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 200, Seed: 1, Out: t.TempDir(), NoShrink: true})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, rep.Verdict)
	saved, err := histories.Load(rep.Path)
	require.NoError(t, err)
	require.Equal(t, "log", saved.Header.Broker)
	require.Equal(t, "log", saved.Header.BrokerName())
	again, res, err := tester.Execute(Case{Workload: saved.Header.Workload, Plan: saved.Header.Plan}, saved.Header.Seed)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict)
	require.Zero(t, histories.FirstDifference(saved.Events, again.Events), "the replay differs from the saved history")

	queue, err := New(Config{Strategy: strat("naive")})
	require.NoError(t, err)
	defer queue.Close()
	h, _, err := queue.Execute(queue.Generate(1), 1)
	require.NoError(t, err)
	b, err := json.Marshal(h.Header)
	require.NoError(t, err)
	require.NotContains(t, string(b), `"broker"`)
	require.Equal(t, "queue", h.Header.BrokerName())
}

func TestLogBrokerConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Strategy: strat("naive"), Broker: "kafka"},
		{Strategy: strat("naive"), Broker: sim.BrokerLog, FreeRunning: true},
		{Strategy: strat("naive"), Broker: sim.BrokerLog, Format12: true},
	} {
		_, err := New(cfg)
		var ce *ConfigError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "Broker", ce.Field)
	}
	_, err := RunMatrix(context.Background(), MatrixOptions{Broker: "kafka", Out: t.TempDir()})
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
}

// The log broker's runs are deterministic, as the queue's are: the
// determinism check a campaign offers holds on it.
func TestLogRunsAreDeterministic(t *testing.T) {
	tester, err := New(Config{Strategy: strat("outbox"), Broker: sim.BrokerLog})
	require.NoError(t, err)
	defer tester.Close()
	for seed := uint64(1); seed <= 30; seed++ {
		c := tester.Generate(seed)
		a, _, err := tester.Execute(c, seed)
		require.NoError(t, err)
		b, _, err := tester.Execute(c, seed)
		require.NoError(t, err)
		require.Zero(t, histories.FirstDifference(a.Events, b.Events), "seed %d", seed)
	}
}
