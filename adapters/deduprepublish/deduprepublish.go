// Package deduprepublish is the idempotent consumer that fixes dedup's lost
// outputs the tempting way: a duplicate is not just skipped, its outputs are
// published again (same ids, derived from the message id). But the handler
// does not store the outputs it computed the first time: it recomputes them
// from the aggregate's CURRENT state, as the talk's AddItem handler does when
// it counts the order lines to decide on FirstItemAdded.
//
// The republished outputs are computed on a state that already contains the
// message's own effect (and maybe later messages'), so they differ from what
// an exactly-once execution publishes, unless the model happens to give the
// same outputs there. So a plain redelivery (a lost ack, with nothing lost)
// already republishes, under the first publish's ids, outputs of the wrong
// state; a crash or publish failure after the commit gives them instead of
// the first publish: inconsistent. Re-issues are applied again: duplicate.
package deduprepublish

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "dedup-republish"

// ProcessedTable holds the ids of processed messages.
const ProcessedTable = strategykit.ProcessedTable

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "as dedup, but a duplicate re-publishes outputs derived from the current state",
		NewHandler: func() adapters.Handler { return handler{} },
	}
}

type handler struct{ strategykit.StateObserver }

func (handler) Handle(env adapters.Env, msg model.Message) error {
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	m := env.Model()
	var outs model.Outputs
	if _, seen, err := tx.Get(ProcessedTable, msg.ID); err != nil {
		return err
	} else if seen {
		// Duplicate: do not change the state, but publish "again" what
		// the message produces on the state as it is now.
		st, err := strategykit.LoadState(tx, m, msg.Aggregate)
		if err != nil {
			return err
		}
		if _, outs, err = m.Apply(st, msg); err != nil {
			return err
		}
		if err := tx.Rollback(); err != nil {
			return err
		}
	} else {
		if outs, err = strategykit.Apply(tx, m, msg); err != nil {
			return err
		}
		if err := tx.Insert(ProcessedTable, msg.ID, nil); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	if err := env.Publish(strategykit.DerivedMessages(outs, msg)...); err != nil {
		return err
	}
	return env.Ack()
}
