// Package brokerwindow puts a broker-style duplicate window in front of the
// transactional outbox (package outbox), as a team does that relies on its
// broker's deduplication (NATS JetStream's Msg-Id window, SQS FIFO's
// deduplication interval, Azure Service Bus's duplicate detection) to
// absorb what its handler does not: re-issues. The window remembers the
// first message id of each idempotence key for Window (SET key id NX PX
// window); a copy with another id under a remembered key is a re-issue,
// acked and dropped; every other copy goes to the outbox handler, which
// deduplicates redeliveries by message id.
//
// Together they survive everything the outbox survives (crashes anywhere,
// redeliveries, publish failures, competing consumers) and re-issues that
// come within the window. A re-issue that comes after it (a late fault just
// past the window: a client that retries after a long timeout, a command
// replayed from a dead-letter queue) finds no key and a new message id, and
// is applied again: duplicate. A window is a time, not a guarantee.
package brokerwindow

import (
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/outbox"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "broker-window"

// Window is how long the window remembers a key: NATS JetStream's default
// duplicate window.
const Window = 2 * time.Minute

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	inner := outbox.Strategy()
	return adapters.Strategy{
		Name:          Name,
		Summary:       "a broker's duplicate window on the idempotence key in front of the outbox",
		NewHandler:    func() adapters.Handler { return handler{inner.NewHandler()} },
		NewDispatcher: inner.NewDispatcher,
		SQLSchema:     inner.SQLSchema,
		Points:        faults.CachePoints,
		Windows:       []time.Duration{Window},
	}
}

type handler struct{ adapters.Handler }

func (h handler) Handle(env adapters.Env, msg model.Message) error {
	key := "window:" + msg.Key
	set, err := env.Cache().SetNX(key, msg.ID, Window)
	if err != nil {
		return err
	}
	if !set {
		first, ok, err := env.Cache().Get(key)
		if err != nil {
			return err
		}
		if ok && first != msg.ID {
			return env.Ack() // a re-issue within the window: dropped
		}
	}
	return h.Handler.Handle(env, msg)
}
