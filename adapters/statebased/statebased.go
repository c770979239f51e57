// Package statebased decides "already applied?" from the domain state, as in
// the state-based idempotence post: a model that can tell (see
// model.AppliedDetector) answers for each message; an applied message is
// acked and skipped. Otherwise the handler applies the message and saves the
// state in one transaction, publishes the outputs (ids derived from the
// message id) and acks.
//
// It needs no bookkeeping and survives re-issues of the messages the state
// can recognise. It fails twice over. Where the state cannot tell (adding
// an item, a deposit), a message that runs again is applied again:
// duplicate. Where it can, it cannot tell a duplicate from a legitimate
// repeat (a second Confirm of an order must be rejected, not ignored): lost.
// And the outputs of a message already applied are not published again, so
// a crash or publish failure after the commit loses them: lost. With a
// model that cannot tell anything (accounts), it is naive, so the matrix
// marks it n/a there.
//
// The harness finds it failing without any fault at all: an order that
// receives two Confirm messages must answer the second with OrderRejected,
// and state-based skips it as "already applied": lost.
package statebased

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "state-based"

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    `"already applied?" decided from domain state`,
		NewHandler: func() adapters.Handler { return handler{} },
		Supports: func(m model.Model) error {
			if _, ok := m.(model.AppliedDetector); !ok {
				return errCannotTell
			}
			return nil
		},
	}
}

var errCannotTell = adapters.Unsupported("the model's state cannot tell whether a message was applied (it implements no model.AppliedDetector), so state-based is naive")

type handler struct{ strategykit.StateObserver }

func (handler) Handle(env adapters.Env, msg model.Message) error {
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	m := env.Model()
	if d, ok := m.(model.AppliedDetector); ok {
		st, err := strategykit.LoadState(tx, m, msg.Aggregate)
		if err != nil {
			return err
		}
		applied, err := d.AlreadyApplied(st, msg)
		if err != nil {
			return err
		}
		if applied {
			if err := tx.Rollback(); err != nil {
				return err
			}
			return env.Ack()
		}
	}
	outs, err := strategykit.Apply(tx, m, msg)
	if err != nil {
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
