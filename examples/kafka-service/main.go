// Command kafka-service is an orders service written the way a team
// writes one on Kafka: it consumes orders commands from the topic
// oncecheck-in in a consumer group of its own (franz-go), keeps the orders
// in PostgreSQL (pgx) and produces what happened to oncecheck-out with
// franz-go's idempotent producer. It reads KAFKA_BROKERS and DATABASE_URL,
// as it would in production, and meets oncecheck's service-mode contract
// for Kafka (docs/service-mode-kafka.md): oncecheck starts it, faults it
// and checks it, black box.
//
// The correct version applies each record once with an inbox (the
// message's key, inserted in the transaction of the change) and an outbox
// (the events, written in that transaction, produced after the commit
// with their ids in the Oncecheck-Id header, then marked sent), and
// commits the record's offset last. ORDERS_BUG selects a broken variant:
//
//   - commit-first: the record's offset is committed as it arrives,
//     before its work;
//
//   - check-first: the inbox is read before the transaction, and the
//     change is made when the key was not there, whatever the inbox
//     insert then finds (and the outbox insert ignores an id already
//     there): nothing fences an attempt whose process stood still past
//     its session timeout from the member that took its partition over.
//     Kafka refuses the zombie's offset commit (its generation is over);
//     its database transaction nobody refuses.
//
//   - cooperative: franz-go's default group settings, which the correct
//     version changes: cooperative-sticky rebalancing, which revokes a
//     partition while the application is still handling its records. A
//     commit made after its partition moved rewinds what the new owner
//     committed; and a member removed from the group that learns it from a
//     refused commit rejoins still claiming its partitions and, given them
//     back, goes on from its own position, past the records whose commits
//     the group never took. Either way the group's committed offset stays
//     short of the end of the partition until more records come.
//
// The correct version blocks rebalances while it handles what it polled
// (BlockRebalanceOnPoll: it commits only partitions it still owns) and
// uses an eager balancer: every rebalance revokes every partition, so a
// member that was removed (or whose commits were refused) starts each of
// its partitions again from the committed offset, as Kafka's Java client
// does once it learns its member id is unknown.
//
// ORDERS_PRODUCE=txn produces the events and commits the offsets in Kafka
// transactions instead (franz-go's GroupTransactSession: the records of a
// poll, their events and their offsets in one transaction, aborted when
// the group rebalances before it ends; transactional id
// orders-$ONCECHECK_CONSUMER, so that a restarted process fences its
// predecessor). The database is outside Kafka's transaction, so the
// inbox is still needed: a record whose transaction aborted after its
// database commit comes again. The outbox is produced, whole, in the
// transaction of every attempt, never marked sent: a transaction that
// aborts takes its events with it, and the next attempt, which the inbox
// tells the change is made, must produce them again. Broken with it:
//
//   - eos-only (with ORDERS_PRODUCE=txn): no inbox; the service trusts
//     Kafka's exactly-once to apply each record once, but a transaction
//     that aborts after the database commit (a crash before the EndTxn, a
//     zombie fenced) leaves the database change made, and the record
//     comes again.
//
// ORDERS_COMMIT=auto leaves the offsets to franz-go's default autocommit
// (every 5 s and at a rebalance, the records of the previous poll)
// instead of committing each record after its work. ORDERS_KGO_LOG=debug
// (or info, warn, error) writes franz-go's log to standard error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/oncecheck/oncecheck/examples/internal/orders"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := serve(ctx, os.Getenv("DATABASE_URL"), os.Getenv("KAFKA_BROKERS"), os.Getenv("ORDERS_BUG"),
		os.Getenv("ORDERS_COMMIT") == "auto", os.Getenv("ORDERS_PRODUCE") == "txn")
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

type ordersService struct {
	db   *pgxpool.Pool
	cl   *kgo.Client
	bug  string
	auto bool // franz-go's autocommit commits the offsets
	txn  bool // Kafka transactions: the events and the offsets in one
}

func serve(ctx context.Context, dbURL, brokers, bug string, auto, txn bool) error {
	switch bug {
	case "", "commit-first", "check-first", "cooperative":
	case "eos-only":
		if !txn {
			return errors.New("ORDERS_BUG=eos-only needs ORDERS_PRODUCE=txn")
		}
	default:
		return fmt.Errorf("ORDERS_BUG=%q: want commit-first, check-first, cooperative or eos-only", bug)
	}
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumerGroup("orders"),
		kgo.ConsumeTopics("oncecheck-in"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Short timeouts keep oncecheck's pauses, which wait the session
		// timeout out, short (franz-go's defaults: 45 s and 3 s).
		kgo.SessionTimeout(time.Second),
		kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.RebalanceTimeout(time.Second),
	}
	if bug != "cooperative" {
		opts = append(opts, kgo.Balancers(kgo.StickyBalancer()))
		if !txn {
			// Not with a GroupTransactSession: its End, after a
			// rebalance that removed the member, waits for a heartbeat
			// that the group's loop, blocked until AllowRebalance, never
			// takes (docs/service-mode-kafka.md); the session aborts a
			// transaction a rebalance cuts into instead.
			opts = append(opts, kgo.BlockRebalanceOnPoll())
		}
	}
	if !auto {
		opts = append(opts, kgo.DisableAutoCommit())
	}
	if level, ok := logLevels[os.Getenv("ORDERS_KGO_LOG")]; ok {
		opts = append(opts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, level, func() string {
			return time.Now().Format("15:04:05.000 ") + "consumer-" + os.Getenv("ONCECHECK_CONSUMER") + " "
		})))
	}
	if txn {
		return serveTxn(ctx, db, bug, opts)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	s := &ordersService{db: db, cl: cl, bug: bug, auto: auto}
	for ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) { log.Printf("orders: fetch %s/%d: %v", t, p, err) })
		for _, rec := range fetches.Records() {
			for try := 1; ; try++ {
				err := s.handle(ctx, rec)
				if err == nil {
					break
				}
				if ctx.Err() != nil || try == 5 {
					return fmt.Errorf("orders: %s/%d/%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
				}
				log.Printf("orders: %s/%d/%d (try %d): %v", rec.Topic, rec.Partition, rec.Offset, try, err)
				time.Sleep(50 * time.Millisecond)
			}
		}
		// What was polled is handled and committed: a rebalance may go on.
		cl.AllowRebalance()
	}
	return ctx.Err()
}

// serveTxn consumes and produces in Kafka transactions: each poll's
// records are handled in one transaction, which carries their events and
// their offsets and which the session aborts if the group rebalanced
// before it ended; the records of an aborted transaction come again.
func serveTxn(ctx context.Context, db *pgxpool.Pool, bug string, opts []kgo.Opt) error {
	opts = append(opts,
		kgo.TransactionalID("orders-"+os.Getenv("ONCECHECK_CONSUMER")),
		// Shorter than a pause of oncecheck's (the session and rebalance
		// timeouts, and more): the broker aborts the transaction of a
		// member that stood still, and a killed member's transaction does
		// not hold its partitions' offsets (KIP-447) for long.
		kgo.TransactionTimeout(2*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return err
	}
	s := &ordersService{db: db, cl: sess.Client(), bug: bug, txn: true}
	for ctx.Err() == nil {
		fetches := sess.PollFetches(ctx)
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) { log.Printf("orders: fetch %s/%d: %v", t, p, err) })
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("orders: begin a transaction: %w", err)
		}
		// A record that fails (its database transaction, or a produce:
		// a producer whose transaction the broker aborted on its timeout
		// is fenced until the transaction ends) aborts the transaction,
		// and the poll's records come again.
		try := kgo.TryCommit
		for _, rec := range recs {
			if err := s.handle(ctx, rec); err != nil {
				log.Printf("orders: %s/%d/%d: %v: aborting the transaction", rec.Topic, rec.Partition, rec.Offset, err)
				try = kgo.TryAbort
				break
			}
		}
		committed, err := sess.End(ctx, try)
		if err != nil {
			// Not retryable (franz-go's word): the process ends, without
			// a Close, and its restart fences what is left of this one.
			return fmt.Errorf("orders: end the transaction: %w", err)
		}
		if !committed && try == kgo.TryCommit {
			log.Printf("orders: the transaction of %d records aborted (the group rebalanced): they come again", len(recs))
		}
	}
	sess.Close()
	return ctx.Err()
}

// logLevels are the values of ORDERS_KGO_LOG.
var logLevels = map[string]kgo.LogLevel{"error": kgo.LogLevelError, "warn": kgo.LogLevelWarn, "info": kgo.LogLevelInfo, "debug": kgo.LogLevelDebug}

func header(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// handle applies one command.
func (s *ordersService) handle(ctx context.Context, rec *kgo.Record) error {
	key, agg, typ := header(rec, "Oncecheck-Key"), header(rec, "Oncecheck-Aggregate"), header(rec, "Oncecheck-Type")
	if s.bug == "commit-first" {
		if err := s.commit(ctx, rec); err != nil {
			return err
		}
	}
	if s.bug == "check-first" {
		var seen bool
		if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM inbox WHERE key = $1)`, key).Scan(&seen); err != nil {
			return err
		}
		if seen {
			return s.finish(ctx, rec, key)
		}
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it does nothing
	fresh := true
	if s.bug != "eos-only" {
		if fresh, err = s.markSeen(ctx, tx, key); err != nil {
			return err
		}
	}
	if !fresh && s.bug != "check-first" {
		_ = tx.Rollback(ctx)
		return s.finish(ctx, rec, key)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO orders (aggregate, state) VALUES ($1, '{"confirmed":false,"lines":{}}') ON CONFLICT DO NOTHING`, agg); err != nil {
		return err
	}
	var o orders.Order
	if err := tx.QueryRow(ctx, `SELECT state FROM orders WHERE aggregate = $1 FOR UPDATE`, agg).Scan(&o); err != nil {
		return err
	}
	events, err := orders.Apply(&o, typ, rec.Value)
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
		if s.bug == "check-first" || s.bug == "eos-only" { // "the outbox insert is idempotent"
			insert += ` ON CONFLICT (id) DO NOTHING`
		}
		if _, err := tx.Exec(ctx, insert, fmt.Sprintf("%s/%d", key, i), key, ev.Type, body); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	return s.finish(ctx, rec, key)
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

// finish produces the events of the message still in the outbox, with
// their ids in the Oncecheck-Id header (the consumers downstream drop a
// second copy), marks them sent, and commits the record's offset.
//
// In a Kafka transaction it produces every event of the message, sent or
// not, and leaves them unmarked: they count only if the transaction
// commits, and the offset is committed by the transaction too.
func (s *ordersService) finish(ctx context.Context, rec *kgo.Record, key string) error {
	query := `SELECT id, type, payload FROM outbox WHERE cause = $1 AND NOT sent ORDER BY id`
	if s.txn {
		query = `SELECT id, type, payload FROM outbox WHERE cause = $1 ORDER BY id`
	}
	rows, err := s.db.Query(ctx, query, key)
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
		out := &kgo.Record{Topic: "oncecheck-out", Key: rec.Key, Value: ev.payload, Headers: []kgo.RecordHeader{
			{Key: "Oncecheck-Id", Value: []byte(ev.id)},
			{Key: "Oncecheck-Type", Value: []byte(ev.typ)},
			{Key: "Oncecheck-Cause", Value: []byte(key)},
		}}
		if err := s.cl.ProduceSync(ctx, out).FirstErr(); err != nil {
			return err
		}
		if s.txn {
			continue
		}
		if _, err := s.db.Exec(ctx, `UPDATE outbox SET sent = true WHERE id = $1`, ev.id); err != nil {
			return err
		}
	}
	if s.bug == "commit-first" || s.txn {
		return nil
	}
	return s.commit(ctx, rec)
}

// commit commits the record's offset. A commit Kafka refuses (this member
// stood still past its session timeout, or was removed from the group) is
// not an error of the record: franz-go rejoins, the eager rebalance takes
// every partition from this member, and whoever gets the partition starts
// from the committed offset, handles the record again, and the inbox drops
// the second copy.
func (s *ordersService) commit(ctx context.Context, rec *kgo.Record) error {
	if s.auto {
		return nil
	}
	if err := s.cl.CommitRecords(ctx, rec); err != nil {
		log.Printf("orders: commit %s/%d/%d: %v", rec.Topic, rec.Partition, rec.Offset, err)
	}
	return nil
}
