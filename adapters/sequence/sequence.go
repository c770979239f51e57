// Package sequence is sequential idempotence, as Eventide's account
// component does it: the aggregate remembers the highest global position it
// has processed, and a message whose global position is lower or equal is
// acked and skipped. State, the new position and the outgoing messages (ids
// derived from the message id) commit in one transaction, as an event store
// writes events; a dispatcher publishes them.
//
// It is predicted to survive crashes, redeliveries, publish failures and
// competing consumers without a processed-id table, in constant space per
// aggregate; here it survives publish failures, and redeliveries at
// repeatable read and serializable (see below for the rest).
// It relies on messages arriving in position order: a reordered delivery
// processes a later message first, and the earlier one is then skipped:
// lost. A re-issued command is written to the command stream again and gets
// a new, higher position, so it is applied again: duplicate.
//
// What the harness adds to the prediction: crashes and competing consumers
// lose messages too, not only explicit reordering. A crash before the commit
// (or a conflict that makes a consumer nack) puts the copy back behind later
// messages; when a later message of the same aggregate is processed first,
// the earlier one's position is below the stored one and it is skipped. The
// strategy needs a broker that never redelivers out of order (a Kafka
// partition, a Message DB category read by one consumer). And at read
// committed, the default, an aggregate's first message has no position row
// to lock (SELECT ... FOR UPDATE of a missing row locks nothing): when a
// lease expires and a second consumer takes the copy while the first works
// on it, both read no position and both apply it: duplicate.
package sequence

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "sequence"

// PositionTable holds, per aggregate, the highest processed global position.
const PositionTable = strategykit.PositionTable

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:          Name,
		Summary:       "the aggregate stores the highest processed global position; lower or equal positions are skipped",
		NewHandler:    func() adapters.Handler { return handler{} },
		NewDispatcher: func() adapters.Dispatcher { return strategykit.OutboxDispatcher{} },
	}
}

type handler struct{ strategykit.StateObserver }

func (handler) Handle(env adapters.Env, msg model.Message) error {
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	processed, err := strategykit.GetCounter(tx, PositionTable, msg.Aggregate)
	if err != nil {
		return err
	}
	if msg.Position <= processed {
		if err := tx.Rollback(); err != nil {
			return err
		}
		return env.Ack()
	}
	outs, err := strategykit.Apply(tx, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := strategykit.PutCounter(tx, PositionTable, msg.Aggregate, msg.Position); err != nil {
		return err
	}
	msgs := strategykit.DerivedMessages(outs, msg)
	if err := strategykit.StoreOutbox(tx, msg.ID, msgs); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return env.Ack()
}
