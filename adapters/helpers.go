package adapters

import (
	"fmt"

	"github.com/oncecheck/oncecheck/model"
)

// StateTable is the table in which the built-in strategies keep aggregate
// states, one row per aggregate.
const StateTable = "state"

// LoadState reads an aggregate's state from StateTable, or the model's
// initial state when the aggregate has none yet.
func LoadState(tx Tx, m model.Model, aggregate string) (model.State, error) {
	v, ok, err := tx.Get(StateTable, aggregate)
	if err != nil {
		return nil, fmt.Errorf("load state of %s: %w", aggregate, err)
	}
	if !ok {
		return m.Initial(aggregate), nil
	}
	return model.State(v), nil
}

// SaveState writes an aggregate's state into StateTable.
func SaveState(tx Tx, aggregate string, s model.State) error {
	if err := tx.Put(StateTable, aggregate, s); err != nil {
		return fmt.Errorf("save state of %s: %w", aggregate, err)
	}
	return nil
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

// DerivedID is the deterministic id of the i-th output of a message: the
// same on every attempt, so downstream deduplication by id works.
func DerivedID(cause model.Message, i int) string { return fmt.Sprintf("%s/out%d", cause.ID, i+1) }
