// Package dedup is the classic idempotent consumer: a table of processed
// message ids is written in the same transaction as the state. A copy whose
// id is in the table is acked and skipped. After the commit the handler
// publishes the outputs (with ids derived from the message id) and acks.
//
// It survives redeliveries (the state changes once), reordering where the
// model does not care, and competing consumers (two attempts at one id
// cannot both commit their processed mark). It does not survive a crash or
// a publish failure after the commit and before the last publish: the
// redelivered copy is recognised as processed and skipped, and the outputs
// that were not yet published are lost for good. It keys on the message id,
// so a re-issued command (new id, same intent) is applied again: duplicate.
package dedup

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "dedup"

// ProcessedTable holds the ids of processed messages.
const ProcessedTable = strategykit.ProcessedTable

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "processed-id table in the state's transaction; duplicates are acked and skipped",
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
	if err := tx.Insert(ProcessedTable, msg.ID, nil); err != nil {
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
