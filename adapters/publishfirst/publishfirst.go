// Package publishfirst publishes before it commits: in one transaction it
// checks the processed-id table, applies the message, publishes the outputs
// (with ids derived from the message id) while the transaction is still
// open, then marks the id processed, saves the state and commits; then it
// acks. Engineers choose it so that no output is ever lost: an output is out
// before the state says the message was handled.
//
// It survives a crash after the commit (the copy is recognised as
// processed), and redeliveries at repeatable read and serializable. When the commit does not happen after the
// publish (a crash, or a publish failure), the outputs are already out for
// a state change that never committed. The retry recomputes them from the
// state it then finds: if another message changed the aggregate in between,
// the first outputs belong to no exactly-once execution: ghost. It keys on
// the message id, so a re-issue is applied again: duplicate.
//
// What the harness adds: competing consumers alone do not break it: the
// state's row lock makes a consumer that races another for an order wait,
// and it publishes on the state the other committed. It takes a lease
// that expires during the attempt, handing the copy to a second consumer,
// for the processed-id insert, which comes after the publish, to fail. At
// read committed (the default) the second consumer computes its outputs
// on the state the first committed meanwhile, publishes them under the
// same ids, and then fails to mark the id: ghost. At repeatable read it
// computes on its snapshot, publishes what the first did, and fails to
// serialize: the redelivery column passes. At serializable, competing
// consumers alone break it: PostgreSQL's serialization failure (and the
// in-memory store's) can come at the commit, after the publish, when two
// consumers' processed-id lookups and inserts form a dangerous structure:
// ghost.
package publishfirst

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "publish-first"

// ProcessedTable holds the ids of processed messages.
const ProcessedTable = strategykit.ProcessedTable

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "publish outputs, then commit state and processed id",
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
	if seen, err := strategykit.SkipIfSeen(env, tx, ProcessedTable, msg.ID); seen || err != nil {
		return err
	}
	outs, err := strategykit.Apply(tx, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := env.Publish(strategykit.DerivedMessages(outs, msg)...); err != nil {
		return err
	}
	if err := tx.Insert(ProcessedTable, msg.ID, nil); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return env.Ack()
}
