// Package ackfirst acks a delivery on receipt, then processes it: one
// transaction applies the message and saves the state, then the outputs are
// published (with ids derived from the message id). It is what a consumer
// with auto-ack (or an offset committed before processing) does.
//
// Once acked, the broker forgets the copy, so a crash anywhere after the ack
// (before the commit, or before the publishes) loses the message or its
// outputs for good: lost. A publish failure is lost the same way: nobody
// will retry. It has no deduplication either, so a copy that comes again (a
// lost ack, a broker duplicate, a re-issue) is applied again: duplicate.
// With competing consumers, an attempt that loses a conflict on the
// aggregate's row cannot be retried after the ack either: lost.
package ackfirst

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "ack-first"

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "ack on receipt, then process (at-most-once)",
		NewHandler: func() adapters.Handler { return handler{} },
	}
}

type handler struct{ strategykit.StateObserver }

func (handler) Handle(env adapters.Env, msg model.Message) error {
	if err := env.Ack(); err != nil {
		return err
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
	return env.Publish(strategykit.DerivedMessages(outs, msg)...)
}
