// Package dedupmarkfirst records the processed id in a transaction of its
// own BEFORE doing the work: first "insert processed id; commit", then "apply,
// save state; commit", then publish (ids derived from the message id) and
// ack. A copy whose id cannot be inserted (already there) is acked and
// skipped. Engineers end up here when the dedup table lives in another
// database than the state, or when "mark as received" is a separate call.
//
// A crash (or a conflict with a competing consumer) between the two commits
// leaves the id marked and the work undone: the redelivered copy is skipped
// and the message has no effect at all: lost. A crash or publish failure
// after the second commit loses the outputs the same way. Re-issues are
// applied again: duplicate.
package dedupmarkfirst

import (
	"errors"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "dedup-mark-first"

// ProcessedTable holds the ids of processed messages.
const ProcessedTable = strategykit.ProcessedTable

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "processed id recorded in its own transaction before the work",
		NewHandler: func() adapters.Handler { return handler{} },
	}
}

type handler struct{ strategykit.StateObserver }

func (handler) Handle(env adapters.Env, msg model.Message) error {
	mark, err := env.Begin()
	if err != nil {
		return err
	}
	defer mark.Rollback()
	if err := mark.Insert(ProcessedTable, msg.ID, nil); errors.Is(err, adapters.ErrExists) {
		if err := mark.Rollback(); err != nil {
			return err
		}
		return env.Ack()
	} else if err != nil {
		return err
	}
	if err := mark.Commit(); err != nil {
		return err
	}

	work, err := env.Begin()
	if err != nil {
		return err
	}
	defer work.Rollback()
	outs, err := strategykit.Apply(work, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := work.Commit(); err != nil {
		return err
	}
	if err := env.Publish(strategykit.DerivedMessages(outs, msg)...); err != nil {
		return err
	}
	return env.Ack()
}
