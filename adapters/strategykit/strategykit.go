// Package strategykit holds what the built-in strategies share: the tables
// they keep (the aggregates' states, the outbox, processed ids, counters),
// loading and saving a state, turning a model's outputs into messages, an
// outbox dispatcher. A handler of one's own may use it too; nothing in it is
// needed to write one.
package strategykit

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/model"
)

// StateTable is the table in which the built-in strategies keep aggregate
// states, one row per aggregate.
const StateTable = "state"

// OutboxTable holds outgoing messages stored with the state, for a
// dispatcher to publish.
const OutboxTable = "outbox"

// LoadState reads an aggregate's state from StateTable, or the model's
// initial state when the aggregate has none yet. The read takes the row's
// write lock (GetForUpdate): the state is read to be changed. An aggregate
// with no row has nothing to lock: SaveState of its first state is then a
// lost update at read committed if another transaction creates the row
// meanwhile; Apply creates it with Insert instead.
func LoadState(tx adapters.Tx, m model.Model, aggregate string) (model.State, error) {
	st, _, err := loadState(tx, m, aggregate)
	return st, err
}

func loadState(tx adapters.Tx, m model.Model, aggregate string) (model.State, bool, error) {
	v, ok, err := tx.GetForUpdate(StateTable, aggregate)
	if err != nil {
		return nil, false, fmt.Errorf("load state of %s: %w", aggregate, err)
	}
	if !ok {
		return m.Initial(aggregate), false, nil
	}
	return model.State(v), true, nil
}

// SaveState writes an aggregate's state into StateTable.
func SaveState(tx adapters.Tx, aggregate string, s model.State) error {
	if err := tx.Put(StateTable, aggregate, s); err != nil {
		return fmt.Errorf("save state of %s: %w", aggregate, err)
	}
	return nil
}

// Apply loads the state of msg's aggregate, applies msg with the model, and
// saves the new state, all in tx. It returns the model's outputs. The
// state's row is locked from the read on; an aggregate's first state is
// created with Insert, so that two transactions that both found no row
// cannot both write one: the second fails with adapters.ErrConflict (at
// read committed, after waiting for the first), as the service's INSERT
// would with a unique violation.
func Apply(tx adapters.Tx, m model.Model, msg model.Message) (model.Outputs, error) {
	st, exists, err := loadState(tx, m, msg.Aggregate)
	if err != nil {
		return nil, err
	}
	next, outs, err := m.Apply(st, msg)
	if err != nil {
		return nil, err
	}
	if exists {
		err = SaveState(tx, msg.Aggregate, next)
	} else {
		err = tx.Insert(StateTable, msg.Aggregate, next)
		if errors.Is(err, adapters.ErrExists) {
			err = fmt.Errorf("%w: the state of %s was created by another transaction meanwhile", adapters.ErrConflict, msg.Aggregate)
		} else if err != nil {
			err = fmt.Errorf("save state of %s: %w", msg.Aggregate, err)
		}
	}
	if err != nil {
		return nil, err
	}
	return outs, nil
}

// StateObserver is the Observe of handlers that keep states with SaveState.
type StateObserver struct{}

// Observe implements Handler.Observe.
func (StateObserver) Observe(tx adapters.Tx, m model.Model, aggregate string) (model.State, error) {
	return LoadState(tx, m, aggregate)
}

// OutputMessages turns a model's outputs for the message cause into
// messages to publish, with ids from id(i) and causation set to the cause's
// idempotence key.
func OutputMessages(outs model.Outputs, cause model.Message, id func(i int) string) []model.Message {
	msgs := make([]model.Message, len(outs))
	for i, o := range outs {
		msgs[i] = model.Message{
			ID: id(i), Aggregate: cause.Aggregate, Type: o.Type, Payload: o.Payload,
			Causation: cause.Key,
		}
	}
	return msgs
}

// DerivedID is the deterministic id of the i-th output of a message copy:
// the same on every attempt at that copy, so downstream deduplication by id
// works for redeliveries (not for re-issues, which have a new id).
func DerivedID(cause model.Message, i int) string { return fmt.Sprintf("%s/out%d", cause.ID, i+1) }

// KeyDerivedID is the deterministic id of the i-th output of a logical
// message: the same for every copy, re-issues included.
func KeyDerivedID(cause model.Message, i int) string { return fmt.Sprintf("%s/out%d", cause.Key, i+1) }

// StoreOutbox stores outgoing messages in OutboxTable, in tx, keyed so that
// a scan returns them in the order given.
func StoreOutbox(tx adapters.Tx, prefix string, msgs []model.Message) error {
	for i, out := range msgs {
		row, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode outbox row: %w", err)
		}
		if err := tx.Insert(OutboxTable, fmt.Sprintf("%s/%04d", prefix, i), row); err != nil {
			return fmt.Errorf("store outbox row: %w", err)
		}
	}
	return nil
}

// OutboxDispatcher claims the rows of OutboxTable (Tx.Claim: SELECT ... FOR
// UPDATE SKIP LOCKED on PostgreSQL), publishes them, then deletes them in
// the same transaction. A crash between the publish and the commit
// publishes the same messages (same ids) again.
type OutboxDispatcher struct{}

// Pass implements Dispatcher.
func (OutboxDispatcher) Pass(env adapters.Env) (bool, error) {
	tx, err := env.Begin()
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	rows, err := tx.Claim(OutboxTable)
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

// DerivedMessages is OutputMessages with ids derived from the cause's message
// id (DerivedID): the same on every attempt at that copy.
func DerivedMessages(outs model.Outputs, cause model.Message) []model.Message {
	return OutputMessages(outs, cause, func(i int) string { return DerivedID(cause, i) })
}

// SkipIfSeen handles a duplicate the way the deduplicating strategies do:
// when key is in table, it rolls tx back and acks the delivery. It reports
// whether the message was seen (and the delivery is done with).
func SkipIfSeen(env adapters.Env, tx adapters.Tx, table, key string) (bool, error) {
	_, seen, err := tx.Get(table, key)
	if err != nil || !seen {
		return false, err
	}
	if err := tx.Rollback(); err != nil {
		return true, err
	}
	return true, env.Ack()
}

// GetCounter reads a number kept per key in table (0 when absent), as the
// sequence and version strategies keep a position or a version per
// aggregate. The read takes the row's write lock (GetForUpdate): a counter
// is read to be moved on.
func GetCounter(tx adapters.Tx, table, key string) (int64, error) {
	v, ok, err := tx.GetForUpdate(table, key)
	if err != nil || !ok {
		return 0, err
	}
	var n int64
	if err := json.Unmarshal(v, &n); err != nil {
		return 0, fmt.Errorf("decode %s/%s: %w", table, key, err)
	}
	return n, nil
}

// PutCounter writes a number kept per key in table.
func PutCounter(tx adapters.Tx, table, key string, n int64) error {
	return tx.Put(table, key, []byte(fmt.Sprint(n)))
}
