// Command pgqueue-service is an orders service written the way a team
// writes a worker on a PostgreSQL table used as a queue: it takes jobs
// from the table jobs with SELECT ... FOR UPDATE SKIP LOCKED, applies each
// to its orders and writes what happened to the table events, in the
// job's transaction. It reads DATABASE_URL and its lease (QUEUE_LEASE_MS)
// from its environment, and meets oncecheck's service-mode contract on a
// PostgreSQL queue (docs/service-mode-postgres.md): oncecheck starts it,
// faults it and checks it, black box.
//
// Each job is applied once per idempotence key: the key goes into an inbox
// table in the job's transaction, and a job whose key is there already is
// finished without being applied again.
//
// QUEUE_CLAIM says how a worker holds a job:
//
//   - lease (the default, as job-queue libraries do): the worker takes a
//     job by writing a lease of its own (a token and locked_until) in a
//     statement of its own, then works in a transaction that finishes
//     the job (done = true) only if the lease is still its own: a worker
//     that outlived its lease, whose job another took, rolls back;
//   - lock: the worker holds the job's row lock for the whole job, in one
//     transaction that takes it, works and deletes it.
//
// ORDERS_BUG selects a broken variant (lease only):
//
//   - done-first: the job is marked done in a statement of its own, as it
//     is taken, before the work's transaction;
//   - no-fence: the inbox is read as the job is taken, and the job is
//     applied when its key was not there, whatever the inbox insert then
//     finds (the events insert ignores an id already there); the job is
//     finished without checking the lease: nothing fences a worker that
//     outlived its lease, and it applies the job a second time after
//     another took it.
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
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oncecheck/oncecheck/examples/internal/orders"
)

// poll is how long a worker waits when it found no job.
const poll = 25 * time.Millisecond

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lease := 30 * time.Second
	if ms, err := strconv.Atoi(os.Getenv("QUEUE_LEASE_MS")); err == nil && ms > 0 {
		lease = time.Duration(ms) * time.Millisecond
	}
	claim := os.Getenv("QUEUE_CLAIM")
	if claim == "" {
		claim = "lease"
	}
	if err := serve(ctx, os.Getenv("DATABASE_URL"), claim, lease, os.Getenv("ORDERS_BUG")); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

type worker struct {
	db    *pgxpool.Pool
	lease time.Duration
	name  string // of this process, in its lease tokens
	n     int    // leases taken
	bug   string
}

// job is a row of the queue.
type job struct {
	id, key, typ, aggregate string
	payload                 []byte
	seen                    bool // no-fence: its key was in the inbox as it was taken
}

func serve(ctx context.Context, dbURL, claim string, lease time.Duration, bug string) error {
	switch bug {
	case "", "done-first", "no-fence":
	default:
		return fmt.Errorf("ORDERS_BUG=%q: want done-first or no-fence", bug)
	}
	if claim != "lease" && claim != "lock" {
		return fmt.Errorf("QUEUE_CLAIM=%q: want lease or lock", claim)
	}
	if claim == "lock" && bug != "" {
		return fmt.Errorf("ORDERS_BUG=%s is a variant of QUEUE_CLAIM=lease", bug)
	}
	pc, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	if mode := os.Getenv("PGX_EXEC_MODE"); mode != "" {
		// The tests run each of pgx's ways of sending a query.
		modes := map[string]pgx.QueryExecMode{"cache_statement": pgx.QueryExecModeCacheStatement, "cache_describe": pgx.QueryExecModeCacheDescribe,
			"describe_exec": pgx.QueryExecModeDescribeExec, "exec": pgx.QueryExecModeExec, "simple_protocol": pgx.QueryExecModeSimpleProtocol}
		m, ok := modes[mode]
		if !ok {
			return fmt.Errorf("PGX_EXEC_MODE=%q: want cache_statement, cache_describe, describe_exec, exec or simple_protocol", mode)
		}
		pc.ConnConfig.DefaultQueryExecMode = m
	}
	pc.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		log.Printf("orders: the server says: %s: %s", n.Severity, n.Message)
	}
	db, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return err
	}
	defer db.Close()
	host, _ := os.Hostname()
	w := &worker{db: db, lease: lease, name: fmt.Sprintf("%s-%d", host, os.Getpid()), bug: bug}
	step := w.leased
	if claim == "lock" {
		step = w.locked
	}
	for ctx.Err() == nil {
		found, err := step(ctx)
		if err != nil {
			// The job stays in the queue: its lease runs out, or its
			// row lock went with the transaction.
			log.Printf("orders: %v", err)
		}
		if !found || err != nil {
			time.Sleep(poll)
		}
	}
	return ctx.Err()
}

// leased takes a job by writing a lease of its own, then applies it in a
// transaction that finishes it only if the lease is still its own.
func (w *worker) leased(ctx context.Context) (bool, error) {
	w.n++
	token := fmt.Sprintf("%s/%d", w.name, w.n)
	var j job
	err := w.db.QueryRow(ctx, `
		UPDATE jobs SET lease = $1, locked_until = now() + $2 * interval '1 millisecond', attempts = attempts + 1
		WHERE id = (SELECT id FROM jobs
		            WHERE NOT done AND (locked_until IS NULL OR locked_until < now())
		            ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING id, key, type, aggregate, payload`, token, w.lease.Milliseconds()).Scan(&j.id, &j.key, &j.typ, &j.aggregate, &j.payload)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	switch w.bug {
	case "done-first":
		if _, err := w.db.Exec(ctx, `UPDATE jobs SET done = true WHERE id = $1`, j.id); err != nil {
			return true, err
		}
	case "no-fence":
		var seen bool
		if err := w.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM inbox WHERE key = $1)`, j.key).Scan(&seen); err != nil {
			return true, err
		}
		j.seen = seen
	}
	tx, err := w.db.Begin(ctx)
	if err != nil {
		return true, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it does nothing
	if err := w.apply(ctx, tx, j); err != nil {
		return true, err
	}
	if w.bug != "done-first" {
		finish := `UPDATE jobs SET done = true WHERE id = $1 AND lease = $2 AND NOT done`
		args := []any{j.id, token}
		if w.bug == "no-fence" {
			finish, args = `UPDATE jobs SET done = true WHERE id = $1`, args[:1]
		}
		tag, err := tx.Exec(ctx, finish, args...)
		if err != nil {
			return true, err
		}
		if tag.RowsAffected() == 0 {
			// The lease ran out and another worker took the job: what
			// this one did is not to count.
			return true, tx.Rollback(ctx)
		}
	}
	return true, tx.Commit(ctx)
}

// locked takes a job and holds its row lock while it applies it, then
// deletes it, all in one transaction.
func (w *worker) locked(ctx context.Context) (bool, error) {
	tx, err := w.db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it does nothing
	var j job
	err = tx.QueryRow(ctx, `SELECT id, key, type, aggregate, payload FROM jobs WHERE NOT done
		ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED`).Scan(&j.id, &j.key, &j.typ, &j.aggregate, &j.payload)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, tx.Rollback(ctx)
	}
	if err != nil {
		return false, err
	}
	if err := w.apply(ctx, tx, j); err != nil {
		return true, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM jobs WHERE id = $1`, j.id); err != nil {
		return true, err
	}
	return true, tx.Commit(ctx)
}

// apply changes the job's order and writes its events, in tx, unless its
// key is in the inbox: then it was applied already.
func (w *worker) apply(ctx context.Context, tx pgx.Tx, j job) error {
	tag, err := tx.Exec(ctx, `INSERT INTO inbox (key) VALUES ($1) ON CONFLICT DO NOTHING`, j.key)
	if err != nil {
		return err
	}
	fresh := tag.RowsAffected() == 1
	if w.bug == "no-fence" {
		fresh = !j.seen
	}
	if !fresh {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO orders (aggregate, state) VALUES ($1, '{"confirmed":false,"lines":{}}') ON CONFLICT DO NOTHING`, j.aggregate); err != nil {
		return err
	}
	var state []byte
	if err := tx.QueryRow(ctx, `SELECT state::text FROM orders WHERE aggregate = $1 FOR UPDATE`, j.aggregate).Scan(&state); err != nil {
		return err
	}
	var o orders.Order
	if err := json.Unmarshal(state, &o); err != nil {
		return err
	}
	events, err := orders.Apply(&o, j.typ, j.payload)
	if err != nil {
		return err
	}
	state, err = json.Marshal(o)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE orders SET state = $2::text::jsonb WHERE aggregate = $1`, j.aggregate, string(state)); err != nil {
		return err
	}
	for i, ev := range events {
		body, err := json.Marshal(ev.Payload)
		if err != nil {
			return err
		}
		insert := `INSERT INTO events (id, cause, type, payload) VALUES ($1, $2, $3, $4::jsonb)`
		if w.bug == "no-fence" { // "the events insert is idempotent"
			insert += ` ON CONFLICT (id) DO NOTHING`
		}
		if _, err := tx.Exec(ctx, insert, fmt.Sprintf("%s/%d", j.key, i), j.key, ev.Type, string(body)); err != nil {
			return err
		}
	}
	return nil
}
