// Package version is optimistic concurrency on the aggregate's version, as
// in the "out of order commands" post: every message carries the version of
// the aggregate the sender expects it to apply to. The aggregate stores its
// version (the number of messages applied). A message expecting the current
// version is applied, the version incremented, and both committed in one
// transaction; then the outputs are published (ids derived from the message
// id) and the copy acked. A message expecting a later version arrived early:
// it is nacked, to be retried after the ones before it. A message expecting
// an earlier version is stale (already applied): acked and skipped.
//
// It survives reordering (early messages wait), re-issues (the copy
// expects a version that has passed), competing consumers, and
// redeliveries at repeatable read and serializable. At read committed, the
// default, an aggregate's first message has no version row to lock (SELECT
// ... FOR UPDATE of a missing row locks nothing): when a lease expires and a
// second consumer takes the copy while the first works on it, both read no
// version and both apply it: duplicate. Like
// dedup, it publishes after the commit without storing the outputs, so a
// crash or publish failure between the commit and the last publish loses
// outputs: the retry is stale and skipped: lost. It is the only strategy of
// the catalogue that keeps an ordered model's send order under every fault:
// a message that arrives early waits, whoever delivers it.
package version

import (
	"fmt"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "version"

// VersionTable holds, per aggregate, the number of messages applied.
const VersionTable = strategykit.VersionTable

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "messages carry the aggregate version they expect; early ones are nacked, stale ones skipped",
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
	current, err := strategykit.GetCounter(tx, VersionTable, msg.Aggregate)
	if err != nil {
		return err
	}
	switch {
	case msg.Version < current:
		if err := tx.Rollback(); err != nil {
			return err
		}
		return env.Ack()
	case msg.Version > current:
		if err := tx.Rollback(); err != nil {
			return err
		}
		return env.Nack(fmt.Sprintf("early: expects version %d of %s, which is at %d", msg.Version, msg.Aggregate, current))
	}
	outs, err := strategykit.Apply(tx, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := strategykit.PutCounter(tx, VersionTable, msg.Aggregate, current+1); err != nil {
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
