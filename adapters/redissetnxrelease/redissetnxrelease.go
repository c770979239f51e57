// Package redissetnxrelease is redis-setnx with the key released when the
// work fails: SET idempotency-key NX EX ttl before the work, a copy whose
// key was set is acked and skipped, and when applying, committing or
// publishing returns an error the handler deletes the key (DEL) before it
// gives the copy back, so that the redelivery does the work.
//
// Releasing the key fixes what a failed commit did to redis-setnx: a
// conflict with a competing consumer now leaves no key, and the retry
// applies the message. But an error is not the only way to fail. A crash
// after the SET never reaches the DEL: the key stays and the redelivery is
// skipped (lost). And an error after the commit releases a key whose work
// is done: a publish that fails makes the redelivery apply the message
// again (duplicate). Like every key with a time to live, it lets a copy
// that comes back after the time to live through (duplicate).
package redissetnxrelease

import (
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/redissetnx"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "redis-setnx-release"

// TTL is the time to live of a key.
const TTL = redissetnx.TTL

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "Redis SET key NX with a TTL before the work, deleted when the work returns an error",
		NewHandler: func() adapters.Handler { return handler{} },
		Points:     faults.CachePoints,
		Windows:    []time.Duration{TTL},
	}
}

type handler struct{ strategykit.StateObserver }

func (handler) Handle(env adapters.Env, msg model.Message) error {
	key := redissetnx.Key(msg)
	set, err := env.Cache().SetNX(key, msg.ID, TTL)
	if err != nil {
		return err
	}
	if !set {
		return env.Ack()
	}
	if err := work(env, msg); err != nil {
		if _, derr := env.Cache().Del(key); derr != nil {
			return derr
		}
		return err
	}
	return env.Ack()
}

// work applies the message, commits and publishes.
func work(env adapters.Env, msg model.Message) error {
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
	return env.Publish(strategykit.DerivedMessages(outs, msg)...)
}
