package campaign

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// checkThenAct asks "already processed?" in one transaction and applies and
// marks in another: two attempts at one key that both pass the check both
// apply. Between the check's read and the act there is no write, commit,
// publish or ack: only a preemption at the read finds the race.
type checkThenAct struct{ strategykit.StateObserver }

func (checkThenAct) Handle(env adapters.Env, msg model.Message) error {
	check, err := env.Begin()
	if err != nil {
		return err
	}
	_, seen, err := check.Get(strategykit.ProcessedTable, msg.Key)
	if rerr := check.Rollback(); err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
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
	if err := tx.Put(strategykit.ProcessedTable, msg.Key, nil); err != nil {
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

var checkThenActStrategy = adapters.Strategy{Name: "check-then-act", NewHandler: func() adapters.Handler { return checkThenAct{} }}

// TestReadsArePreemptionPoints: a check-then-act handler raced by a second
// copy on a competing consumer, at read committed. Preempting it right
// after the check's read (boundary #3) finds the race, and so does a
// preemption after the act's Begin (boundary #4: the act then reads the
// state the other copy committed, and applies the message again). Without
// read points only the second remains. (A preemption right after the
// check's Begin finds nothing: the check's read then sees the other
// copy's mark.)
func TestReadsArePreemptionPoints(t *testing.T) {
	w := model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number()
	finds := func(readsNotPreempted bool) []int {
		tester, err := New(Config{Strategy: checkThenActStrategy, ReadsNotPreempted: readsNotPreempted})
		require.NoError(t, err)
		var found []int
		for at := range 30 {
			p := faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Redelivery, Variant: faults.Duplicate}, {Kind: faults.Concurrent, At: at}}}
			_, res, err := tester.Execute(Case{Workload: w, Plan: p}, 1)
			require.NoError(t, err)
			if res.Verdict == histories.Violation {
				require.Equal(t, histories.Duplicate, res.Primary(), "preempted at boundary #%d: %v", at+1, res.Findings)
				found = append(found, at)
			}
		}
		return found
	}
	require.Equal(t, []int{2, 3}, finds(false), "after the check's read, and after the act's Begin")
	require.Equal(t, []int{2}, finds(true), "format 1.1: after the act's Begin only")
}

// TestCheckThenActIsFound: campaigns of 300 runs with the fault kinds that
// make a second copy meet the first (competing consumers, redeliveries and
// leases that expire mid-attempt, re-issues, reorders) find the
// check-then-act race as a duplicate with every seed tried here (20 of 20
// seeds in docs/benchmarks.md).
func TestCheckThenActIsFound(t *testing.T) {
	tester, err := New(Config{Strategy: checkThenActStrategy,
		Faults: []faults.Kind{faults.Concurrent, faults.Redelivery, faults.Reissue, faults.Reorder}})
	require.NoError(t, err)
	for seed := uint64(1000); seed <= 5000; seed += 1000 {
		rep, err := tester.Search(context.Background(), SearchOptions{Runs: 300, Seed: seed, Out: t.TempDir(), NoShrink: true})
		require.NoError(t, err)
		require.Equal(t, histories.Violation, rep.Verdict, "seed %d", seed)
		require.Equal(t, histories.Duplicate, rep.Result.Primary(), "seed %d: %v", seed, rep.Result.Findings)
	}
}
