// Package outbox is the transactional outbox. In one transaction the handler
// checks the processed-id table, applies the message, saves the state, marks
// the id processed and stores the outgoing messages (with ids derived from
// the incoming message id) in an outbox table; then it acks. It publishes
// nothing itself: a dispatcher, a second process, publishes the stored
// messages and deletes them from the outbox in its own transaction. A
// duplicate is acked: its outputs are in the outbox, or already published.
//
// It survives crashes anywhere, redeliveries, publish failures (the
// dispatcher retries) and competing consumers: state, processed mark and
// outputs commit together, and a dispatcher that crashes between publishing
// and deleting publishes the same message (same id) again, which downstream
// deduplication by id absorbs. With the downstream policy none (checkers.DownstreamNone) those second copies
// are violations. It keys on the message id, so a re-issued command (new id,
// same intent) is applied again: duplicate.
//
// On an ordered model (profiles) the harness finds it out-of-order under
// crashes, reordering and competing consumers: it applies messages in the
// order they arrive, and a broker that puts a crashed or nacked delivery
// back behind later ones (as this simulation's broker, SQS or RabbitMQ's
// requeue under load do) reorders them. Only the version strategy keeps
// send order.
package outbox

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "outbox"

// ProcessedTable holds the ids of processed messages.
const ProcessedTable = strategykit.ProcessedTable

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:          Name,
		Summary:       "processed id and outgoing messages stored with the state in one transaction; a dispatcher publishes them",
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
	if seen, err := strategykit.SkipIfSeen(env, tx, ProcessedTable, msg.ID); seen || err != nil {
		return err
	}
	outs, err := strategykit.Apply(tx, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := tx.Insert(ProcessedTable, msg.ID, nil); err != nil {
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
