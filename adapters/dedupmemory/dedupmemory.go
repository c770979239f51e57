// Package dedupmemory deduplicates with an in-process set of seen message
// ids: a copy whose id is in the set is acked and skipped; otherwise the
// handler applies the message and saves the state in one transaction,
// publishes the outputs (ids derived from the message id), adds the id to
// the set and acks. It is the cache-based "idempotency filter".
//
// It survives a redelivery to the same, living process after the id was
// added. Everything the set does not hold is a hole: a restart (a crash
// after the commit) empties it, a competing consumer has its own, and an id
// is only added after the publishes, so a publish failure or crash before
// that retries the committed work. The message is then applied again:
// duplicate. Re-issues have a new id: duplicate. As for dedup-mark-last,
// competing consumers alone never handle the same copy twice; with a
// redelivery among them they do: a lease that expires while the first
// attempt runs hands the copy to another consumer, whose set never saw it
// (duplicate; out-of-order on an ordered model).
package dedupmemory

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "dedup-memory"

// BeforeRemember is the strategy's own crash point: the work is committed and
// published, and the id is not yet in the set.
const BeforeRemember faults.Point = "before-remember"

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "in-process set of seen ids (lost on restart, not shared between consumers)",
		NewHandler: func() adapters.Handler { return &handler{seen: map[string]bool{}} },
		Points:     []faults.Point{BeforeRemember},
	}
}

type handler struct {
	strategykit.StateObserver
	seen map[string]bool
}

func (h *handler) Handle(env adapters.Env, msg model.Message) error {
	if h.seen[msg.ID] {
		return env.Ack()
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
	if err := env.Publish(strategykit.DerivedMessages(outs, msg)...); err != nil {
		return err
	}
	env.Point(string(BeforeRemember))
	h.seen[msg.ID] = true
	return env.Ack()
}
