// Command service is an orders service written the way a team writes one:
// it consumes orders commands from NATS JetStream with a durable pull
// consumer, keeps the orders in PostgreSQL and publishes what happened. It
// reads DATABASE_URL and NATS_URL, as it would in production, and meets
// oncecheck's service-mode contract (docs/service-mode.md): oncecheck
// starts it, faults it and checks it, black box.
//
// The correct version applies each message once with an inbox (the
// message's key, inserted in the transaction of the change) and an outbox
// (the events, written in that transaction, published after the commit
// with their ids as Nats-Msg-Id, then marked sent), and acks last.
// ORDERS_BUG selects a broken variant:
//
//   - ack-first: the message is acked as it arrives, before its work;
//   - dedup-first: the inbox mark is committed in a transaction of its
//     own, before the change;
//   - check-first: the inbox is read before the transaction, and the
//     change is made when the key was not there, whatever the inbox
//     insert then finds (and the outbox insert ignores an id already
//     there): nothing fences an attempt that outlived its ack wait from
//     the attempt that took its copy over.
//   - no-inbox: no inbox at all (the outbox insert ignores an id already
//     there): a copy of a message that comes again after it was applied,
//     with its id or a new one, is applied again.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oncecheck/oncecheck/examples/internal/orders"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, os.Getenv("DATABASE_URL"), os.Getenv("NATS_URL"), os.Getenv("ORDERS_BUG")); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

type ordersService struct {
	db  *pgxpool.Pool
	js  jetstream.JetStream
	bug string
}

func serve(ctx context.Context, dbURL, natsURL, bug string) error {
	switch bug {
	case "", "ack-first", "dedup-first", "check-first", "no-inbox":
	default:
		return fmt.Errorf("ORDERS_BUG=%q: want ack-first, dedup-first, check-first or no-inbox", bug)
	}
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	// A dropped connection (a broker restart) is reconnected after
	// 250ms: nats.go's default waits 2s before trying the same server
	// again, which each broker-restart run of a test would sit out.
	nc, err := nats.Connect(natsURL, nats.Name("orders"), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "ONCECHECK_IN", jetstream.ConsumerConfig{
		Durable:    "orders",
		AckPolicy:  jetstream.AckExplicitPolicy,
		AckWait:    time.Second,
		MaxDeliver: -1,
	})
	if err != nil {
		return err
	}
	s := &ordersService{db: db, js: js, bug: bug}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(250*time.Millisecond))
		if err != nil {
			return err
		}
		for msg := range batch.Messages() {
			if err := s.handle(ctx, msg); err != nil {
				log.Printf("orders: %v", err)
				_ = msg.Nak()
			}
		}
	}
	return ctx.Err()
}

// handle applies one command.
func (s *ordersService) handle(ctx context.Context, msg jetstream.Msg) error {
	h := msg.Headers()
	key, agg, typ := h.Get("Oncecheck-Key"), h.Get("Oncecheck-Aggregate"), h.Get("Oncecheck-Type")
	if s.bug == "ack-first" {
		if err := msg.Ack(); err != nil {
			return err
		}
	}
	if s.bug == "dedup-first" {
		fresh, err := s.markSeen(ctx, s.db, key)
		if err != nil {
			return err
		}
		if !fresh {
			return s.finish(ctx, msg, key)
		}
	}
	if s.bug == "check-first" {
		var seen bool
		if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM inbox WHERE key = $1)`, key).Scan(&seen); err != nil {
			return err
		}
		if seen {
			return s.finish(ctx, msg, key)
		}
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it does nothing
	if s.bug == "check-first" {
		if _, err := s.markSeen(ctx, tx, key); err != nil {
			return err
		}
	} else if s.bug != "dedup-first" && s.bug != "no-inbox" {
		fresh, err := s.markSeen(ctx, tx, key)
		if err != nil {
			return err
		}
		if !fresh {
			_ = tx.Rollback(ctx)
			return s.finish(ctx, msg, key)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO orders (aggregate, state) VALUES ($1, '{"confirmed":false,"lines":{}}') ON CONFLICT DO NOTHING`, agg); err != nil {
		return err
	}
	var o orders.Order
	if err := tx.QueryRow(ctx, `SELECT state FROM orders WHERE aggregate = $1 FOR UPDATE`, agg).Scan(&o); err != nil {
		return err
	}
	events, err := orders.Apply(&o, typ, msg.Data())
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE orders SET state = $2 WHERE aggregate = $1`, agg, o); err != nil {
		return err
	}
	for i, ev := range events {
		body, err := json.Marshal(ev.Payload)
		if err != nil {
			return err
		}
		insert := `INSERT INTO outbox (id, cause, type, payload) VALUES ($1, $2, $3, $4)`
		if s.bug == "check-first" || s.bug == "no-inbox" { // "the outbox insert is idempotent"
			insert += ` ON CONFLICT (id) DO NOTHING`
		}
		if _, err := tx.Exec(ctx, insert, fmt.Sprintf("%s/%d", key, i), key, ev.Type, body); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	return s.finish(ctx, msg, key)
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// markSeen inserts the message's key into the inbox and reports whether
// it was new.
func (s *ordersService) markSeen(ctx context.Context, db execer, key string) (bool, error) {
	tag, err := db.Exec(ctx, `INSERT INTO inbox (key) VALUES ($1) ON CONFLICT DO NOTHING`, key)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// finish publishes the events of the message still in the outbox, with
// their ids as Nats-Msg-Id (the stream drops a second copy), marks them
// sent, and acks the message.
func (s *ordersService) finish(ctx context.Context, msg jetstream.Msg, key string) error {
	rows, err := s.db.Query(ctx, `SELECT id, type, payload FROM outbox WHERE cause = $1 AND NOT sent ORDER BY id`, key)
	if err != nil {
		return err
	}
	type pending struct {
		id, typ string
		payload []byte
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pending, error) {
		var p pending
		err := r.Scan(&p.id, &p.typ, &p.payload)
		return p, err
	})
	if err != nil {
		return err
	}
	for _, ev := range evs {
		out := nats.NewMsg("oncecheck.out." + ev.typ)
		out.Data = ev.payload
		out.Header.Set("Nats-Msg-Id", ev.id)
		out.Header.Set("Oncecheck-Cause", key)
		if _, err := s.js.PublishMsg(ctx, out); err != nil {
			return err
		}
		if _, err := s.db.Exec(ctx, `UPDATE outbox SET sent = true WHERE id = $1`, ev.id); err != nil {
			return err
		}
	}
	if s.bug == "ack-first" {
		return nil
	}
	return msg.Ack()
}
