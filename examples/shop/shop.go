// Package shop is an example of a team's own service verified by
// oncecheck: a cart service that consumes AddToCart and Checkout commands
// and publishes CartUpdated, OrderPlaced and CheckoutRejected events. Its
// handler is written the way the team would write it, with pgx and SQL:
// an inbox table keyed on the idempotence key (a re-issued command, with a
// new message id, is the same intent) and an outbox table, both in the
// transaction that changes the cart, and a relay that publishes the outbox.
//
// Model is the team's specification of the business logic; Strategy is
// the handler as oncecheck runs it; Broken is a subtly wrong variant that
// records the key in its own transaction before the work.
package shop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/sqlenv"
	"github.com/oncecheck/oncecheck/model"
)

// Message and event types.
const (
	AddToCart        = "AddToCart"
	Checkout         = "Checkout"
	CartUpdated      = "CartUpdated"
	OrderPlaced      = "OrderPlaced"
	CheckoutRejected = "CheckoutRejected"
)

// Cart is the state of one cart, in the model and in the carts table.
type Cart struct {
	CheckedOut bool           `json:"checked_out"`
	Items      map[string]int `json:"items"`
}

// AddToCartCommand is AddToCart's payload.
type AddToCartCommand struct {
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

// Model is the specification: what the cart service must do with each
// command, applied exactly once.
var Model = model.Typed[Cart]{
	Title:       "shop",
	Description: "carts: AddToCart and Checkout (example service)",
	Init:        func(string) Cart { return Cart{Items: map[string]int{}} },
	Step:        decide,
	Generate: func(max int) *rapid.Generator[model.Workload] {
		return rapid.Custom(func(t *rapid.T) model.Workload {
			n := rapid.IntRange(1, max).Draw(t, "messages")
			var w model.Workload
			for range n {
				cart := fmt.Sprintf("cart-%d", rapid.IntRange(1, 2).Draw(t, "cart"))
				if rapid.IntRange(0, 4).Draw(t, "kind") == 4 {
					w = append(w, model.Send(cart, Checkout, struct{}{}))
					continue
				}
				w = append(w, model.Send(cart, AddToCart, AddToCartCommand{
					Item: rapid.SampledFrom([]string{"apple", "pear"}).Draw(t, "item"),
					Qty:  rapid.IntRange(1, 2).Draw(t, "qty"),
				}))
			}
			return w.Number()
		})
	},
}

// decide is the business logic, shared by the specification and the
// handler (the team's domain code).
func decide(c Cart, m model.Message) (Cart, model.Outputs, error) {
	if c.Items == nil {
		c.Items = map[string]int{}
	}
	switch m.Type {
	case AddToCart:
		cmd, err := model.Payload[AddToCartCommand](m)
		if err != nil {
			return c, nil, err
		}
		if c.CheckedOut {
			return c, model.Outputs{model.Emit(CheckoutRejected, map[string]string{"reason": "cart already checked out"})}, nil
		}
		c.Items[cmd.Item] += cmd.Qty
		return c, model.Outputs{model.Emit(CartUpdated, map[string]int{"items": count(c)})}, nil
	case Checkout:
		if c.CheckedOut || len(c.Items) == 0 {
			return c, model.Outputs{model.Emit(CheckoutRejected, map[string]string{"reason": "nothing to check out"})}, nil
		}
		c.CheckedOut = true
		return c, model.Outputs{model.Emit(OrderPlaced, map[string]int{"items": count(c)})}, nil
	}
	return c, nil, fmt.Errorf("shop: unknown message %q", m.Type)
}

func count(c Cart) int {
	n := 0
	for _, q := range c.Items {
		n += q
	}
	return n
}

// Schema is the service's tables.
const Schema = `
CREATE TABLE carts (cart_id text PRIMARY KEY, state text NOT NULL);
CREATE TABLE inbox (idempotency_key text PRIMARY KEY);
CREATE TABLE outbox (seq bigserial PRIMARY KEY, message_id text NOT NULL UNIQUE,
	type text NOT NULL, payload text NOT NULL, cause text NOT NULL);`

// Strategy is the service's handler and outbox relay as oncecheck runs them.
var Strategy = adapters.Strategy{
	Name: "shop", Summary: "the example cart service: inbox and outbox in the cart's transaction (SQL)",
	SQLSchema:     Schema,
	NewHandler:    func() adapters.Handler { return handler{} },
	NewDispatcher: func() adapters.Dispatcher { return relay{} },
}

// Broken is the same service with one mistake: the inbox row is committed
// in a transaction of its own, before the cart's.
var Broken = adapters.Strategy{
	Name: "shop-broken", Summary: "the example cart service, inbox committed before the work",
	SQLSchema:     Schema,
	NewHandler:    func() adapters.Handler { return handler{inboxFirst: true} },
	NewDispatcher: func() adapters.Dispatcher { return relay{} },
}

type handler struct{ inboxFirst bool }

func begin(env adapters.Env) (pgx.Tx, error) {
	tx, err := sqlenv.Begin(env)
	if err != nil {
		return nil, fmt.Errorf("shop: %w", err)
	}
	return tx, nil
}

// Handle processes one command.
func (h handler) Handle(env adapters.Env, msg model.Message) error {
	ctx := context.Background()
	if h.inboxFirst {
		// The mistake: "remember we got it" first, in its own transaction.
		tx, err := begin(env)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO inbox (idempotency_key) VALUES ($1) ON CONFLICT DO NOTHING`, msg.Key)
		if err != nil {
			_ = tx.Rollback(ctx)
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return env.Ack() // seen before
		}
	}
	tx, err := begin(env)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if !h.inboxFirst {
		tag, err := tx.Exec(ctx, `INSERT INTO inbox (idempotency_key) VALUES ($1) ON CONFLICT DO NOTHING`, msg.Key)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			if err := tx.Rollback(ctx); err != nil {
				return err
			}
			return env.Ack() // a duplicate: its events are in the outbox or out
		}
	}
	// The cart's row must exist to be locked: SELECT ... FOR UPDATE of a
	// missing row locks nothing, and two first commands to a cart would
	// then both write it, the second overwriting the first (a lost update
	// at read committed, PostgreSQL's default). The insert waits for a
	// racing one and then does nothing.
	if _, err := tx.Exec(ctx, `INSERT INTO carts (cart_id, state) VALUES ($1, '{"items":{}}') ON CONFLICT DO NOTHING`, msg.Aggregate); err != nil {
		return err
	}
	cart := Cart{Items: map[string]int{}}
	var state string
	if err := tx.QueryRow(ctx, `SELECT state FROM carts WHERE cart_id = $1 FOR UPDATE`, msg.Aggregate).Scan(&state); err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(state), &cart); err != nil {
		return fmt.Errorf("cart %s: %w", msg.Aggregate, err)
	}
	cart, events, err := decide(cart, msg)
	if err != nil {
		return err
	}
	b, err := json.Marshal(cart)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE carts SET state = $2 WHERE cart_id = $1`, msg.Aggregate, string(b)); err != nil {
		return err
	}
	for i, ev := range events {
		if _, err := tx.Exec(ctx, `INSERT INTO outbox (message_id, type, payload, cause) VALUES ($1, $2, $3, $4)`,
			fmt.Sprintf("%s/event-%d", msg.Key, i+1), ev.Type, string(ev.Payload), msg.Key); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	return env.Ack()
}

// Observe reads a cart for the checker.
func (handler) Observe(t adapters.Tx, m model.Model, cart string) (model.State, error) {
	tx, err := sqlenv.Tx(t)
	if err != nil {
		return nil, err
	}
	var state string
	err = tx.QueryRow(context.Background(), `SELECT state FROM carts WHERE cart_id = $1`, cart).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return m.Initial(cart), nil
	}
	if err != nil {
		return nil, err
	}
	return model.State(state), nil
}

// relay publishes the outbox, oldest first, and deletes what it published.
type relay struct{}

// Pass implements adapters.Dispatcher.
func (relay) Pass(env adapters.Env) (bool, error) {
	ctx := context.Background()
	tx, err := begin(env)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `SELECT seq, message_id, type, payload, cause FROM outbox ORDER BY seq LIMIT 20 FOR UPDATE SKIP LOCKED`)
	if err != nil {
		return false, err
	}
	type row struct {
		seq                     int64
		id, typ, payload, cause string
	}
	var batch []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.seq, &r.id, &r.typ, &r.payload, &r.cause); err != nil {
			rows.Close()
			return false, err
		}
		batch = append(batch, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	if len(batch) == 0 {
		return false, tx.Rollback(ctx)
	}
	for _, r := range batch {
		if err := env.Publish(model.Message{ID: r.id, Type: r.typ, Payload: []byte(r.payload), Causation: r.cause}); err != nil {
			return true, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM outbox WHERE seq = $1`, r.seq); err != nil {
			return true, err
		}
	}
	return true, tx.Commit(ctx)
}
