// Package reservation is the reservation pattern (Eventide, Hubbado): the
// idempotence key, not the message id, is reserved with a unique insert, in
// the same transaction that applies the message and saves the state, and
// the reservation row stores the outputs the message produced. Outputs get
// ids derived from the key. After the commit the handler publishes them and
// acks. A copy whose key is already reserved (a redelivery, or a re-issue
// with a new id) publishes the stored outputs again and acks.
//
// Nothing is predicted to break it: state, reservation and outputs commit
// together; a crash or publish failure after the commit is repaired by the
// next copy, which republishes the same outputs with the same ids; a
// re-issue finds the key reserved; two competing consumers cannot both
// insert the reservation. The harness agrees on the unordered models. On
// the ordered profiles model it is out-of-order under crashes, reordering
// and competing consumers, like every strategy that applies messages in
// arrival order (see outbox).
package reservation

import (
	"encoding/json"
	"fmt"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "reservation"

// ReservationTable holds one row per idempotence key: the outputs its
// processing produced.
const ReservationTable = strategykit.ReservationTable

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "the idempotence key is reserved (unique) with the state and the outputs; duplicates republish them",
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
	var msgs []model.Message
	if v, reserved, err := tx.Get(ReservationTable, msg.Key); err != nil {
		return err
	} else if reserved {
		if err := json.Unmarshal(v, &msgs); err != nil {
			return fmt.Errorf("decode reservation %s: %w", msg.Key, err)
		}
		if err := tx.Rollback(); err != nil {
			return err
		}
	} else {
		outs, err := strategykit.Apply(tx, env.Model(), msg)
		if err != nil {
			return err
		}
		msgs = strategykit.OutputMessages(outs, msg, func(i int) string { return strategykit.KeyDerivedID(msg, i) })
		row, err := json.Marshal(msgs)
		if err != nil {
			return err
		}
		if err := tx.Insert(ReservationTable, msg.Key, row); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	if err := env.Publish(msgs...); err != nil {
		return err
	}
	return env.Ack()
}
