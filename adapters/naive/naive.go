// Package naive is the strategy without any deduplication: in one
// transaction it loads the aggregate, applies the message and saves the new
// state; after the commit it publishes the outputs (with fresh ids) and acks.
//
// It survives crashes before the commit (nothing happened; the copy comes
// back), reordering where the model does not care about order, and
// competing consumers (the loser of a race gets a conflict, at the row's
// lock or, for a row that is new, at its write; it nacks and retries). It does not survive anything that makes a committed
// message run again: a redelivery, a crash after the commit and before the
// ack, a publish failure (the handler nacks after committing), a re-issue.
// Each of those applies the message a second time: duplicate.
package naive

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "naive"

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "no deduplication: commit, then publish, then ack",
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
	outs, err := strategykit.Apply(tx, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if err := env.Publish(strategykit.OutputMessages(outs, msg, func(int) string { return env.NewID() })...); err != nil {
		return err
	}
	return env.Ack()
}
