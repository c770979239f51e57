// Package redissetnx deduplicates with a Redis key set before the work, the
// common idiom: SET idempotency-key NX EX ttl; a copy whose key was already
// set is acked and skipped; otherwise the handler applies the message and
// saves the state in one transaction, publishes the outputs (ids derived
// from the message id) and acks. The key lives in the cache beside the
// database (Env.Cache): it survives the consumer's crash and is never
// rolled back with the transaction.
//
// It survives redeliveries of a message whose work was done (ack lost,
// broker duplicates, an expired lease) and re-issues of it within the time
// to live, since it keys on the idempotence key. Everything else is a hole,
// because the key says "done" before anything is done: a crash or a failed
// publish after the SET, or a conflict with a competing consumer that nacks
// the copy, leaves the key set and the work (or its outputs) undone, and the
// redelivery is skipped: lost. And the key expires: a copy that comes back
// after the time to live (a late fault just past TTL) is applied again:
// duplicate. A time to live longer than any delay a copy can arrive with,
// counted from the first delivery (a late copy may come back late again),
// closes that hole and no other.
package redissetnx

import (
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "redis-setnx"

// TTL is the time to live of a key.
const TTL = time.Hour

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy { return WithTTL(TTL) }

// WithTTL returns the strategy with keys that live for ttl.
func WithTTL(ttl time.Duration) adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "Redis SET key NX with a TTL before the work; a copy whose key is set is skipped",
		NewHandler: func() adapters.Handler { return handler{ttl: ttl} },
		Points:     faults.CachePoints,
		Windows:    []time.Duration{ttl},
	}
}

// Key is the cache key of a logical message.
func Key(msg model.Message) string { return "idem:" + msg.Key }

type handler struct {
	strategykit.StateObserver
	ttl time.Duration
}

func (h handler) Handle(env adapters.Env, msg model.Message) error {
	set, err := env.Cache().SetNX(Key(msg), msg.ID, h.ttl)
	if err != nil {
		return err
	}
	if !set {
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
	return env.Ack()
}
