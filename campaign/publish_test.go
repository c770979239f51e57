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

// publishingHandler applies a message once (its id marked processed in the
// state's transaction), then publishes its outputs (ids derived from the
// message: a second copy is identical) and acks. retries is how many times
// it tries the publish again after a failure; with ignore it acks whatever
// the publish said.
type publishingHandler struct {
	strategykit.StateObserver
	retries int
	ignore  bool
}

func (h publishingHandler) Handle(env adapters.Env, msg model.Message) error {
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if seen, err := strategykit.SkipIfSeen(env, tx, strategykit.ProcessedTable, msg.ID); seen || err != nil {
		return err
	}
	outs, err := strategykit.Apply(tx, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := tx.Insert(strategykit.ProcessedTable, msg.ID, nil); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	msgs := strategykit.DerivedMessages(outs, msg)
	err = env.Publish(msgs...)
	for try := 0; err != nil && try < h.retries; try++ {
		err = env.Publish(msgs...)
	}
	if err != nil && !h.ignore {
		return err
	}
	return env.Ack()
}

func publishing(name string, h publishingHandler) adapters.Strategy {
	return adapters.Strategy{Name: name, NewHandler: func() adapters.Handler { return h }}
}

// TestARetriedPublishReachesTheBroker: a publish failure strikes one
// publish call, as a broker's refusal does; a handler that retries the
// publish within its attempt, as producers do, is exactly-once under every
// kind of publish failure. (Before, the failure stayed in force for the
// rest of the attempt: the retry could never succeed.)
func TestARetriedPublishReachesTheBroker(t *testing.T) {
	tester, err := New(Config{Strategy: publishing("retry-publish", publishingHandler{retries: 2}), Faults: []faults.Kind{faults.PublishFailure}})
	require.NoError(t, err)
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 300, Seed: 1, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Pass, rep.Verdict, "%v", rep.Result.Findings)
	require.NotZero(t, rep.Injected[faults.PublishFailure])

	// A rejected publish, retried, is in the history once refused, then
	// published.
	w := model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number()
	plan := faults.Plan{Faults: []faults.Fault{{Kind: faults.PublishFailure, Process: faults.Consumer, Variant: faults.Rejected}}}
	h, res, err := tester.Execute(Case{Workload: w, Plan: plan}, 1)
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict)
	var kinds []histories.Kind
	for _, ev := range h.Events {
		if ev.Kind == histories.Refused || ev.Kind == histories.Publish || ev.Kind == histories.Nack {
			kinds = append(kinds, ev.Kind)
		}
	}
	require.Equal(t, []histories.Kind{histories.Refused, histories.Publish, histories.Publish}, kinds, "refused once, then both outputs published; no nack")
}

// TestAnIgnoredPublishFailureIsCaught: the same handler that acks after a
// failed publish loses the outputs the broker refused.
func TestAnIgnoredPublishFailureIsCaught(t *testing.T) {
	tester, err := New(Config{Strategy: publishing("ignore-publish", publishingHandler{ignore: true}), Faults: []faults.Kind{faults.PublishFailure}})
	require.NoError(t, err)
	rep, err := tester.Search(context.Background(), SearchOptions{Runs: 300, Seed: 1, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, rep.Verdict)
	require.Equal(t, histories.Lost, rep.Result.Primary())
}
