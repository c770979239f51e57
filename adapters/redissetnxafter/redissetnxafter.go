// Package redissetnxafter deduplicates with a Redis key set after the
// commit: the handler reads the key (GET); a copy whose key is set is acked
// and skipped; otherwise it applies the message and saves the state in one
// transaction, publishes the outputs (ids derived from the message id),
// then sets the key with a time to live (SET key EX ttl) and acks.
//
// Marking after the work keeps it from skipping work that was never done:
// a crash before the commit, or a conflict with a competing consumer,
// leaves no key, and the redelivery does the work. But a crash or a failed
// publish between the commit and the SET leaves the work done and no key:
// the redelivery applies it again (duplicate), as dedup-mark-last does with
// a table. The key expires too: a copy that comes back after the time to
// live is applied again (duplicate). It keys on the idempotence key, so a
// re-issue within the time to live is skipped. And the GET and the SET are
// a check-then-act: when a lease expires while the first attempt works and
// a second consumer takes the copy, both find no key and both apply it
// (duplicate).
package redissetnxafter

import (
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/redissetnx"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "redis-setnx-after"

// TTL is the time to live of a key.
const TTL = redissetnx.TTL

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "Redis GET before the work, SET key with a TTL after the commit and the publishes",
		NewHandler: func() adapters.Handler { return handler{} },
		Points:     faults.CachePoints,
		Windows:    []time.Duration{TTL},
	}
}

type handler struct{ strategykit.StateObserver }

func (handler) Handle(env adapters.Env, msg model.Message) error {
	key := redissetnx.Key(msg)
	if _, seen, err := env.Cache().Get(key); seen || err != nil {
		if err != nil {
			return err
		}
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
	if err := env.Cache().Set(key, msg.ID, TTL); err != nil {
		return err
	}
	return env.Ack()
}
