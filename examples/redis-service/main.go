// Command redis-service is an orders service written the way a team
// writes one on Redis Streams: it consumes orders commands from a stream
// with a consumer group (XREADGROUP), claims the entries other consumers
// left pending for longer than its claim idle time (XAUTOCLAIM), keeps the
// orders in PostgreSQL and adds what happened to an output stream. It
// reads DATABASE_URL, REDIS_URL, its streams (ONCECHECK_IN_STREAM,
// ONCECHECK_OUT_STREAM) and its claim idle time (REDIS_CLAIM_IDLE_MS) from
// its environment, and meets oncecheck's service-mode contract on Redis
// (docs/service-mode-redis.md): oncecheck starts it, faults it and checks
// it, black box.
//
// The correct version applies each entry once with an inbox (the
// message's key, inserted in the transaction of the change) and an outbox
// (the events, written in that transaction, added to the output stream
// after the commit with their ids in the id field, then marked sent), and
// acknowledges (XACK) last. ORDERS_BUG selects a broken variant:
//
//   - ack-first: the entry is acknowledged as it arrives, before its work;
//   - check-first: the inbox is read before the transaction, and the
//     change is made when the key was not there, whatever the inbox
//     insert then finds (and the outbox insert ignores an id already
//     there): nothing fences an attempt that outlived its claim idle time
//     from the consumer that claimed its entry, and Redis takes the late
//     XACK of the first as well.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oncecheck/oncecheck/examples/internal/orders"
)

// group is the service's consumer group on its input stream.
const group = "orders"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	idle := 30 * time.Second
	if ms, err := strconv.Atoi(os.Getenv("REDIS_CLAIM_IDLE_MS")); err == nil && ms > 0 {
		idle = time.Duration(ms) * time.Millisecond
	}
	cfg := settings{
		dbURL: os.Getenv("DATABASE_URL"), redisURL: os.Getenv("REDIS_URL"),
		in: os.Getenv("ONCECHECK_IN_STREAM"), out: os.Getenv("ONCECHECK_OUT_STREAM"),
		claimIdle: idle, bug: os.Getenv("ORDERS_BUG"),
	}
	if err := serve(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

type settings struct {
	dbURL, redisURL, in, out string
	claimIdle                time.Duration
	bug                      string
}

type ordersService struct {
	db       *pgxpool.Pool
	rdb      *redis.Client
	in, out  string
	consumer string
	bug      string
}

func serve(ctx context.Context, cfg settings) error {
	switch cfg.bug {
	case "", "ack-first", "check-first":
	default:
		return fmt.Errorf("ORDERS_BUG=%q: want ack-first or check-first", cfg.bug)
	}
	if cfg.in == "" || cfg.out == "" {
		return errors.New("ONCECHECK_IN_STREAM and ONCECHECK_OUT_STREAM name the streams")
	}
	db, err := pgxpool.New(ctx, cfg.dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	opts, err := redis.ParseURL(cfg.redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	// The group reads the stream from its start: the entries added before
	// the service came up are its work too.
	if err := rdb.XGroupCreateMkStream(ctx, cfg.in, group, "0").Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return err
	}
	host, _ := os.Hostname()
	s := &ordersService{db: db, rdb: rdb, in: cfg.in, out: cfg.out, bug: cfg.bug,
		consumer: fmt.Sprintf("%s-%d", host, os.Getpid())}
	for ctx.Err() == nil {
		// First the entries another consumer left pending too long: it
		// died, or stands still.
		claimed, _, err := rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: cfg.in, Group: group, Consumer: s.consumer, MinIdle: cfg.claimIdle, Start: "0-0", Count: 1,
		}).Result()
		if err != nil {
			return err
		}
		msgs := claimed
		if len(msgs) == 0 {
			streams, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group: group, Consumer: s.consumer, Streams: []string{cfg.in, ">"}, Count: 1, Block: 100 * time.Millisecond,
			}).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			for _, st := range streams {
				msgs = append(msgs, st.Messages...)
			}
		}
		for _, msg := range msgs {
			if err := s.handle(ctx, msg); err != nil {
				// Left pending: a claim takes it again after the idle time.
				log.Printf("orders: %s: %v", msg.ID, err)
			}
		}
	}
	return ctx.Err()
}

// field reads a field of an entry.
func field(msg redis.XMessage, name string) string {
	s, _ := msg.Values[name].(string)
	return s
}

// handle applies one command.
func (s *ordersService) handle(ctx context.Context, msg redis.XMessage) error {
	key, agg, typ := field(msg, "key"), field(msg, "aggregate"), field(msg, "type")
	if s.bug == "ack-first" {
		if err := s.rdb.XAck(ctx, s.in, group, msg.ID).Err(); err != nil {
			return err
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
	fresh, err := markSeen(ctx, tx, key)
	if err != nil {
		return err
	}
	if !fresh && s.bug != "check-first" {
		_ = tx.Rollback(ctx)
		return s.finish(ctx, msg, key)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO orders (aggregate, state) VALUES ($1, '{"confirmed":false,"lines":{}}') ON CONFLICT DO NOTHING`, agg); err != nil {
		return err
	}
	var o orders.Order
	if err := tx.QueryRow(ctx, `SELECT state FROM orders WHERE aggregate = $1 FOR UPDATE`, agg).Scan(&o); err != nil {
		return err
	}
	events, err := orders.Apply(&o, typ, []byte(field(msg, "payload")))
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
	return s.finish(ctx, msg, key)
}

// markSeen inserts the message's key into the inbox and reports whether
// it was new.
func markSeen(ctx context.Context, tx pgx.Tx, key string) (bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO inbox (key) VALUES ($1) ON CONFLICT DO NOTHING`, key)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// finish adds the events of the message still in the outbox to the output
// stream, with their ids in the id field (a reader drops a second copy),
// marks them sent, and acknowledges the entry.
func (s *ordersService) finish(ctx context.Context, msg redis.XMessage, key string) error {
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
		if err := s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.out, Values: []any{
			"id", ev.id, "type", ev.typ, "cause", key, "payload", string(ev.payload),
		}}).Err(); err != nil {
			return err
		}
		if _, err := s.db.Exec(ctx, `UPDATE outbox SET sent = true WHERE id = $1`, ev.id); err != nil {
			return err
		}
	}
	if s.bug == "ack-first" {
		return nil
	}
	return s.rdb.XAck(ctx, s.in, group, msg.ID).Err()
}
