// Package outbox is the transactional outbox. In one transaction the handler
// checks the processed-id table, applies the message, saves the state, marks
// the id processed and stores the outgoing messages (with ids derived from
// the incoming message id) in an outbox table; then it acks. It publishes
// nothing itself: a dispatcher, a second process, publishes the stored
// messages and deletes them from the outbox in its own transaction.
//
// It survives crashes anywhere and redeliveries: state, processed mark and
// outputs commit together, and a dispatcher that crashes between publishing
// and deleting publishes the same message (same id) again, which downstream
// deduplication by id absorbs. With --downstream=none those second copies
// are violations. It keys on the message id, so a re-issued command (new id,
// same intent) is applied again.
package outbox

import (
	"encoding/json"
	"fmt"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "outbox"

// Tables of the strategy.
const (
	ProcessedTable = "processed"
	OutboxTable    = "outbox"
)

func init() {
	adapters.Register(adapters.Strategy{
		Name:          Name,
		Summary:       "processed id and outgoing messages stored with the state in one transaction; a dispatcher publishes them",
		NewHandler:    func() adapters.Handler { return handler{} },
		NewDispatcher: func() adapters.Dispatcher { return dispatcher{} },
	})
}

type handler struct{}

func (handler) Handle(env adapters.Env, msg model.Message) error {
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, seen, err := tx.Get(ProcessedTable, msg.ID); err != nil {
		return err
	} else if seen {
		// Already processed: its outputs are in the outbox or published.
		if err := tx.Rollback(); err != nil {
			return err
		}
		return env.Ack()
	}
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
	if err := tx.Insert(ProcessedTable, msg.ID, nil); err != nil {
		return err
	}
	for i, out := range adapters.OutputMessages(outs, msg, func(i int) string { return adapters.DerivedID(msg, i) }) {
		row, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode outbox row: %w", err)
		}
		if err := tx.Insert(OutboxTable, fmt.Sprintf("%s/%04d", msg.ID, i), row); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return env.Ack()
}

func (handler) Observe(tx adapters.Tx, m model.Model, aggregate string) (model.State, error) {
	return adapters.LoadState(tx, m, aggregate)
}

type dispatcher struct{}

// Pass publishes every stored message, then deletes the published rows in
// one transaction.
func (dispatcher) Pass(env adapters.Env) (bool, error) {
	tx, err := env.Begin()
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	rows, err := tx.Scan(OutboxTable)
	if err != nil {
		return false, err
	}
	if len(rows) == 0 {
		return false, tx.Rollback()
	}
	for _, row := range rows {
		var msg model.Message
		if err := json.Unmarshal(row.Value, &msg); err != nil {
			return true, fmt.Errorf("decode outbox row %s: %w", row.Key, err)
		}
		if err := env.Publish(msg); err != nil {
			return true, err
		}
		if err := tx.Delete(OutboxTable, row.Key); err != nil {
			return true, err
		}
	}
	return true, tx.Commit()
}
