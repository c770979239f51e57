// Package naive is the strategy without any deduplication: in one
// transaction it loads the aggregate, applies the message and saves the new
// state; after the commit it publishes the outputs (with fresh ids) and acks.
//
// It survives crashes before the commit (nothing happened; the copy comes
// back). It does not survive a redelivery after the commit: the message is
// applied a second time (duplicate state change and outputs). A crash after
// the commit and before the ack is such a redelivery too.
package naive

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "naive"

func init() {
	adapters.Register(adapters.Strategy{
		Name:       Name,
		Summary:    "no deduplication: commit, then publish, then ack",
		NewHandler: func() adapters.Handler { return handler{} },
	})
}

type handler struct{}

func (handler) Handle(env adapters.Env, msg model.Message) error {
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	m := env.Model()
	st, err := adapters.LoadState(tx, m, msg.Aggregate)
	if err != nil {
		return err
	}
	next, outs, err := m.Apply(st, msg)
	if err != nil {
		return err
	}
	if err := adapters.SaveState(tx, msg.Aggregate, next); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if err := env.Publish(adapters.OutputMessages(outs, msg, func(int) string { return env.NewID() })...); err != nil {
		return err
	}
	return env.Ack()
}

func (handler) Observe(tx adapters.Tx, m model.Model, aggregate string) (model.State, error) {
	return adapters.LoadState(tx, m, aggregate)
}
