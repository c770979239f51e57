package oncecheck

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// recorder is a TB that keeps what Verify reports.
type recorder struct {
	name   string
	logs   []string
	errors []string
	skips  []string
}

func (r *recorder) Helper()      {}
func (r *recorder) Name() string { return r.name }
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skips = append(r.skips, fmt.Sprintf(format, args...))
}

func strategyNamed(t *testing.T, name string) adapters.Strategy {
	s, err := catalogue.Builtin().Strategy(name)
	require.NoError(t, err)
	return s
}

func TestVerifyPassesAnExactlyOnceHandler(t *testing.T) {
	t.Parallel()
	r := &recorder{name: "TestShop"}
	Verify(r, Spec{Model: model.Orders{}, Strategy: strategyNamed(t, "reservation"), Runs: 100, Out: t.TempDir()})
	require.Empty(t, r.errors)
	require.Len(t, r.logs, 1)
	require.Regexp(t, `oncecheck: reservation is exactly-once over 100 runs \(seed \d+, .*; faults injected: crash=\d+`, r.logs[0])
}

func TestVerifyExplainsAFailureAndReplaysIt(t *testing.T) {
	out := t.TempDir()
	r := &recorder{name: "TestDedup"}
	spec := Spec{Model: model.Orders{}, Strategy: strategyNamed(t, "dedup"), Faults: []faults.Kind{faults.Crash}, Runs: 300, Out: out}
	Verify(r, spec)
	require.Len(t, r.errors, 1)
	msg := r.errors[0]
	require.Contains(t, msg, "oncecheck: dedup is not exactly-once: lost")
	require.Contains(t, msg, "evidence: attempt #1")
	require.Contains(t, msg, "Timeline:")
	require.Regexp(t, `replay \(from the module's root\): ONCECHECK_REPLAY=/\S+\.jsonl go test -run '\^TestDedup\$' \.\n`, msg)

	// The same test name gives the same seed: the failure reproduces.
	again := &recorder{name: "TestDedup"}
	Verify(again, spec)
	require.Equal(t, r.errors, again.errors)

	// With ONCECHECK_REPLAY, Verify replays the saved history.
	path := strings.Fields(msg[strings.Index(msg, "saved: "):])[1]
	t.Setenv(ReplayEnv, path)
	replayed := &recorder{name: "TestDedup"}
	Verify(replayed, spec)
	require.Len(t, replayed.errors, 1)
	require.Contains(t, replayed.errors[0], "not exactly-once: lost")
	require.Contains(t, replayed.logs[0], "events identical to the saved ones: true")
}

func TestVerifyRejectsAnIncompleteSpec(t *testing.T) {
	r := &recorder{name: "TestBad"}
	Verify(r, Spec{Model: model.Orders{}})
	require.Len(t, r.errors, 1)
	require.Contains(t, r.errors[0], "Spec needs a Model and a Strategy")
}

// renamedModel is a built-in model under a name of its own.
type renamedModel struct {
	model.Model
	name string
}

func (m renamedModel) Name() string { return m.name }

// TestParallelVerifyShareNothing runs 32 Verify campaigns at once, each
// with a model and a strategy of its own names, half of them failing, and
// checks and replays each failure through a catalogue of its own: nothing
// is registered anywhere, so nothing is shared (make test runs it under
// -race, three times).
func TestParallelVerifyShareNothing(t *testing.T) {
	for i := range 32 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			m := renamedModel{model.Orders{}, fmt.Sprintf("orders-%d", i)}
			base, broken := "outbox", i%2 == 1
			if broken {
				base = "naive"
			}
			s := strategyNamed(t, base)
			s.Name = fmt.Sprintf("%s-%d", base, i)
			r := &recorder{name: fmt.Sprintf("TestParallel%d", i)}
			Verify(r, Spec{Model: m, Strategy: s, Faults: []faults.Kind{faults.Redelivery}, Runs: 30, Seed: uint64(i + 1), Out: t.TempDir()})
			if !broken {
				require.Empty(t, r.errors)
				require.Contains(t, r.logs[0], s.Name+" is exactly-once over 30 runs")
				return
			}
			require.Len(t, r.errors, 1)
			require.Contains(t, r.errors[0], s.Name+" is not exactly-once: duplicate")
			path := strings.Fields(r.errors[0][strings.Index(r.errors[0], "saved: "):])[1]
			h, err := histories.Load(path)
			require.NoError(t, err)
			require.Equal(t, m.name, h.Header.Model)
			require.Equal(t, s.Name, h.Header.Strategy)

			_, err = Check(h, CheckOptions{})
			var unknown *catalogue.UnknownError
			require.ErrorAs(t, err, &unknown, "the built-in catalogue does not know %s", m.name)
			cat := catalogue.Builtin().WithModels(m).WithStrategies(s)
			res, err := Check(h, CheckOptions{Catalogue: cat})
			require.NoError(t, err)
			require.Equal(t, histories.Violation, res.Verdict)
			replayed, res, err := Replay(h, ReplayOptions{Catalogue: cat})
			require.NoError(t, err)
			require.Equal(t, h.Events, replayed.Events)
			require.Contains(t, res.Anomalies, histories.Duplicate)
		})
	}
}

// processSeen is a dedup set in a package-level variable, as a middleware
// may keep one: it outlives every run.
var processSeen = struct {
	sync.Mutex
	ids map[string]bool
}{ids: map[string]bool{}}

type packageLevelDedup struct{ strategykit.StateObserver }

func (packageLevelDedup) Handle(env adapters.Env, msg model.Message) error {
	processSeen.Lock()
	seen := processSeen.ids[msg.ID]
	processSeen.ids[msg.ID] = true
	processSeen.Unlock()
	if seen {
		return env.Ack()
	}
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	outs, err := strategykit.Apply(tx, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if err := env.Publish(strategykit.DerivedMessages(outs, msg)...); err != nil {
		return err
	}
	return env.Ack()
}

// TestVerifyReportsAPackageLevelDedupAsNotDeterministic holds that Verify
// says an adapter whose dedup set lives in a package-level variable is not
// deterministic, because state carried over between runs, instead of
// blaming a message with a counterexample.
func TestVerifyReportsAPackageLevelDedupAsNotDeterministic(t *testing.T) {
	processSeen.Lock()
	clear(processSeen.ids) // as in a fresh process
	processSeen.Unlock()
	r := &recorder{name: "TestPackageLevelDedup"}
	Verify(r, Spec{Model: model.Orders{}, Strategy: adapters.Strategy{Name: "package-level-dedup",
		NewHandler: func() adapters.Handler { return packageLevelDedup{} }}, Runs: 30, Out: t.TempDir()})
	require.Len(t, r.errors, 1, "%v", r.errors)
	require.Contains(t, r.errors[0], "package-level-dedup is not deterministic")
	require.Contains(t, r.errors[0], "state carried over from an earlier run")
	require.NotContains(t, r.errors[0], "What went wrong")
}
