// Command amqp-service is the orders service of examples/service written
// for RabbitMQ, the way a team writes one with amqp091-go and pgx: it
// consumes orders commands from the queue AMQP_QUEUE (manual acks,
// prefetch 4), keeps the orders in PostgreSQL and publishes what happened
// to the exchange AMQP_EXCHANGE on a channel in confirm mode. It reads
// AMQP_URL and DATABASE_URL, and meets oncecheck's service-mode contract
// on RabbitMQ (docs/service-mode-amqp.md).
//
// The correct version applies each message once with an inbox (the
// message's key, inserted in the transaction of the change) and an outbox
// (the events, written in that transaction, published after the commit
// with their ids as message-id, waiting for the server's confirmation,
// then marked sent), and acks last. When its channel is closed under it
// (RabbitMQ's consumer timeout) it opens another and consumes again.
// ORDERS_BUG selects a broken variant:
//
//   - ack-first: the delivery is acked as it arrives, before its work;
//   - dedup-first: the inbox mark is committed in a transaction of its
//     own, before the change;
//   - check-first: the inbox is read before the transaction, and the
//     change is made when the key was not there, whatever the inbox
//     insert then finds: a delivery that outlived the consumer timeout
//     (the server took the copy back and gave it to another consumer, and
//     will refuse this one's ack) still commits its change.
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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oncecheck/oncecheck/examples/internal/orders"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := serve(ctx, os.Getenv("DATABASE_URL"), os.Getenv("AMQP_URL"), os.Getenv("AMQP_QUEUE"), os.Getenv("AMQP_EXCHANGE"), os.Getenv("ORDERS_BUG"))
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

type ordersService struct {
	db       *pgxpool.Pool
	conn     *amqp.Connection
	pub      *amqp.Channel // in confirm mode
	exchange string
	bug      string
}

func serve(ctx context.Context, dbURL, amqpURL, queue, exchange, bug string) error {
	switch bug {
	case "", "ack-first", "dedup-first", "check-first":
	default:
		return fmt.Errorf("ORDERS_BUG=%q: want ack-first, dedup-first or check-first", bug)
	}
	if queue == "" || exchange == "" {
		return errors.New("AMQP_QUEUE and AMQP_EXCHANGE name the input queue and the output exchange")
	}
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Ping(ctx); err != nil {
		return err
	}
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	s := &ordersService{db: db, conn: conn, exchange: exchange, bug: bug}
	// Each turn consumes on a fresh channel until the server closes it
	// (the consumer timeout does) or the connection ends.
	for ctx.Err() == nil {
		if conn.IsClosed() {
			return errors.New("the connection to RabbitMQ closed")
		}
		if err := s.consume(ctx, queue); err != nil {
			log.Printf("orders: %v", err)
		}
	}
	return ctx.Err()
}

// consume opens a channel, consumes the queue on it and handles each
// delivery until the channel closes.
func (s *ordersService) consume(ctx context.Context, queue string) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Qos(4, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	for d := range deliveries {
		if err := s.handle(ctx, d); err != nil {
			log.Printf("orders: %s: %v", d.MessageId, err)
			_ = d.Nack(false, true)
		}
	}
	return errors.New("the consuming channel closed")
}

// publisher returns the channel outputs are published on, in confirm
// mode, opening it again when it closed.
func (s *ordersService) publisher() (*amqp.Channel, error) {
	if s.pub != nil && !s.pub.IsClosed() {
		return s.pub, nil
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		return nil, err
	}
	s.pub = ch
	return ch, nil
}

// handle applies one command.
func (s *ordersService) handle(ctx context.Context, d amqp.Delivery) error {
	key, _ := d.Headers["Oncecheck-Key"].(string)
	agg, _ := d.Headers["Oncecheck-Aggregate"].(string)
	typ := d.Type
	if s.bug == "ack-first" {
		if err := d.Ack(false); err != nil {
			return err
		}
	}
	if s.bug == "dedup-first" {
		fresh, err := s.markSeen(ctx, s.db, key)
		if err != nil {
			return err
		}
		if !fresh {
			return s.finish(ctx, d, key)
		}
	}
	if s.bug == "check-first" {
		var seen bool
		if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM inbox WHERE key = $1)`, key).Scan(&seen); err != nil {
			return err
		}
		if seen {
			return s.finish(ctx, d, key)
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
	} else if s.bug != "dedup-first" {
		fresh, err := s.markSeen(ctx, tx, key)
		if err != nil {
			return err
		}
		if !fresh {
			_ = tx.Rollback(ctx)
			return s.finish(ctx, d, key)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO orders (aggregate, state) VALUES ($1, '{"confirmed":false,"lines":{}}') ON CONFLICT DO NOTHING`, agg); err != nil {
		return err
	}
	var o orders.Order
	if err := tx.QueryRow(ctx, `SELECT state FROM orders WHERE aggregate = $1 FOR UPDATE`, agg).Scan(&o); err != nil {
		return err
	}
	events, err := orders.Apply(&o, typ, d.Body)
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
		if s.bug == "check-first" { // "the outbox insert is idempotent"
			insert += ` ON CONFLICT (id) DO NOTHING`
		}
		if _, err := tx.Exec(ctx, insert, fmt.Sprintf("%s/%d", key, i), key, ev.Type, body); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	return s.finish(ctx, d, key)
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
// their ids as message-id, waits for each confirmation, marks them sent,
// and acks the delivery.
func (s *ordersService) finish(ctx context.Context, d amqp.Delivery, key string) error {
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
		pub, err := s.publisher()
		if err != nil {
			return err
		}
		c, err := pub.PublishWithDeferredConfirmWithContext(ctx, s.exchange, ev.typ, false, false, amqp.Publishing{
			MessageId: ev.id, Type: ev.typ, ContentType: "application/json", DeliveryMode: amqp.Persistent,
			Headers: amqp.Table{"Oncecheck-Cause": key}, Body: ev.payload,
		})
		if err != nil {
			return err
		}
		ok, err := c.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("the broker refused the publish of %s", ev.id)
		}
		if _, err := s.db.Exec(ctx, `UPDATE outbox SET sent = true WHERE id = $1`, ev.id); err != nil {
			return err
		}
	}
	if s.bug == "ack-first" {
		return nil
	}
	return d.Ack(false)
}
