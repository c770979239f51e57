// Package pgstore is the PostgreSQL backend, through pgx: the store the
// strategies run on is a table of keys and values in a schema of its own,
// and each transaction is a real PostgreSQL transaction.
//
// Transactions run at the REPEATABLE READ isolation level (snapshot
// isolation; the snapshot is taken when the transaction begins), with a
// short lock_timeout: the semantics of the in-memory store, so that a plan
// gives the same verdict on both. Two kinds of failure are conflicts a real
// consumer retries (the harness nacks the delivery): serialization failures
// (40001), when a transaction writes a row changed since its snapshot, and
// lock timeouts (55P03) or deadlocks (40P01), when it writes a row another
// open transaction has written. The short lock timeout matters: the harness
// runs one process at a time, so a transaction waiting for a lock held by a
// parked process would wait forever; instead it fails at once, and the
// outcome stays a function of the schedule. A crash closes the
// transaction's connection, so the server aborts what was open.
//
// Inserting a key that exists is a unique violation (ErrExists), with
// INSERT ... ON CONFLICT DO NOTHING. Every other failure (the server cannot
// be reached, or restarts mid-run) is adapters.ErrBackend: the harness makes
// the run inconclusive.
package pgstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oncecheck/oncecheck/adapters"
)

// LockTimeout is how long a transaction waits for a row lock before the
// write fails as a conflict.
const LockTimeout = 100 * time.Millisecond

// Options configure a Store.
type Options struct {
	// Schema names the schema to create; "" picks a fresh one.
	Schema string
	// Keep leaves the schema in place on Close, for inspection.
	Keep bool
	// Timeout bounds each statement (default 10s).
	Timeout time.Duration
	// DDL creates the tables of handlers that write SQL, in the schema
	// (see adapters.Strategy.SQLSchema).
	DDL string
}

// Store is a PostgreSQL backend in a schema of its own.
type Store struct {
	pool    *pgxpool.Pool
	schema  string
	table   string // quoted, schema-qualified
	keep    bool
	timeout time.Duration
}

var schemas atomic.Int64

// Open connects to dsn and creates the store's schema and table. An error
// wraps adapters.ErrBackend when the server cannot be used.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres DSN %q: %w", dsn, err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to postgres: %v", adapters.ErrBackend, err)
	}
	if o.Schema == "" {
		var b [6]byte
		_, _ = rand.Read(b[:]) // a name unique across processes; it never reaches a run
		o.Schema = fmt.Sprintf("oncecheck_%x_%d", b, schemas.Add(1))
	}
	s := &Store{pool: pool, schema: o.Schema, keep: o.Keep, timeout: o.Timeout}
	s.table = pgx.Identifier{o.Schema, "kv"}.Sanitize()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	ddl := fmt.Sprintf(`CREATE SCHEMA IF NOT EXISTS %s;
CREATE TABLE IF NOT EXISTS %s (tbl text NOT NULL, key text NOT NULL, value bytea, PRIMARY KEY (tbl, key))`,
		pgx.Identifier{o.Schema}.Sanitize(), s.table)
	if _, err := pool.Exec(ctx, ddl); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: cannot use postgres at %s: %v", adapters.ErrBackend, describe(cfg.ConnConfig), err)
	}
	if o.DDL != "" {
		tx, err := pool.Begin(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{o.Schema}.Sanitize())
		}
		if err == nil {
			_, err = tx.Exec(ctx, o.DDL)
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("create the handler's tables: %w", err)
		}
	}
	return s, nil
}

func describe(c *pgx.ConnConfig) string { return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database) }

// Schema returns the store's schema name.
func (s *Store) Schema() string { return s.schema }

// Pool returns the connection pool (for benchmarks and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Table returns the quoted, schema-qualified name of the store's table.
func (s *Store) Table() string { return s.table }

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

// Begin implements adapters.Store.
func (s *Store) Begin() (adapters.StoreTx, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, classify(err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		conn.Release()
		return nil, classify(err)
	}
	// SET takes no snapshot; the SELECT pins it at the beginning, as the
	// in-memory store does. Unqualified names resolve to the schema.
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = '%dms'; SET LOCAL search_path TO %s; SELECT 1",
		LockTimeout.Milliseconds(), pgx.Identifier{s.schema}.Sanitize())); err != nil {
		_ = tx.Rollback(ctx)
		conn.Release()
		return nil, classify(err)
	}
	return &Tx{s: s, conn: conn, tx: tx}, nil
}

// Reset implements adapters.Store: it empties every table of the schema.
func (s *Store) Reset() error {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", s.schema)
	if err != nil {
		return classify(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return classify(err)
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = pgx.Identifier{s.schema, n}.Sanitize()
	}
	if _, err := s.pool.Exec(ctx, "TRUNCATE "+strings.Join(quoted, ", ")+" RESTART IDENTITY"); err != nil {
		return classify(err)
	}
	return nil
}

// Close implements adapters.Store: it drops the schema unless Keep.
func (s *Store) Close() error {
	defer s.pool.Close()
	if s.keep {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s.schema}.Sanitize()+" CASCADE"); err != nil {
		return classify(err)
	}
	return nil
}

// Tx is a transaction of a Store, on a connection of its own.
type Tx struct {
	s      *Store
	conn   *pgxpool.Conn
	tx     pgx.Tx
	writes []string
	done   bool
}

var (
	_ adapters.StoreTx = (*Tx)(nil)
	_ adapters.Store   = (*Store)(nil)
)

// ErrDone is returned by operations on a finished transaction.
var ErrDone = errors.New("transaction already finished")

// Get implements adapters.Tx.
func (t *Tx) Get(table, key string) ([]byte, bool, error) {
	if t.done {
		return nil, false, ErrDone
	}
	ctx, cancel := t.s.ctx()
	defer cancel()
	var v []byte
	err := t.tx.QueryRow(ctx, "SELECT value FROM "+t.s.table+" WHERE tbl = $1 AND key = $2", table, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, classify(err)
	}
	return v, true, nil
}

func (t *Tx) exec(sql string, args ...any) (pgconn.CommandTag, error) {
	if t.done {
		return pgconn.CommandTag{}, ErrDone
	}
	ctx, cancel := t.s.ctx()
	defer cancel()
	tag, err := t.tx.Exec(ctx, sql, args...)
	if err != nil {
		return tag, classify(err)
	}
	return tag, nil
}

// Put implements adapters.Tx.
func (t *Tx) Put(table, key string, value []byte) error {
	_, err := t.exec("INSERT INTO "+t.s.table+" (tbl, key, value) VALUES ($1, $2, $3) ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value", table, key, value)
	if err == nil {
		t.writes = append(t.writes, table+"/"+key)
	}
	return err
}

// Insert implements adapters.Tx: a unique insert.
func (t *Tx) Insert(table, key string, value []byte) error {
	tag, err := t.exec("INSERT INTO "+t.s.table+" (tbl, key, value) VALUES ($1, $2, $3) ON CONFLICT (tbl, key) DO NOTHING", table, key, value)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return adapters.ErrExists
	}
	t.writes = append(t.writes, table+"/"+key)
	return nil
}

// Delete implements adapters.Tx.
func (t *Tx) Delete(table, key string) error {
	_, err := t.exec("DELETE FROM "+t.s.table+" WHERE tbl = $1 AND key = $2", table, key)
	if err == nil {
		t.writes = append(t.writes, table+"/"+key)
	}
	return err
}

// Scan implements adapters.Tx, in byte order of the keys.
func (t *Tx) Scan(table string) ([]adapters.Row, error) {
	if t.done {
		return nil, ErrDone
	}
	ctx, cancel := t.s.ctx()
	defer cancel()
	rows, err := t.tx.Query(ctx, "SELECT key, value FROM "+t.s.table+` WHERE tbl = $1 ORDER BY key COLLATE "C"`, table)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (adapters.Row, error) {
		var row adapters.Row
		err := r.Scan(&row.Key, &row.Value)
		return row, err
	})
	if err != nil {
		return nil, classify(err)
	}
	return out, nil
}

// PGX returns the transaction itself, for handlers that write SQL.
func (t *Tx) PGX() pgx.Tx { return t.tx }

// Classify maps an error of a SQL handler's statement to the harness's
// vocabulary: conflicts, unique violations, or backend failures.
func Classify(err error) error {
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	return classify(err)
}

// Writes implements adapters.StoreTx.
func (t *Tx) Writes() []string { return append([]string(nil), t.writes...) }

// Commit implements adapters.Tx.
func (t *Tx) Commit() error {
	if t.done {
		return ErrDone
	}
	t.done = true
	defer t.conn.Release()
	ctx, cancel := t.s.ctx()
	defer cancel()
	if err := t.tx.Commit(ctx); err != nil {
		return classify(err)
	}
	return nil
}

// Rollback implements adapters.Tx; it is a no-op on a finished
// transaction.
func (t *Tx) Rollback() error {
	if t.done {
		return nil
	}
	t.done = true
	defer t.conn.Release()
	ctx, cancel := t.s.ctx()
	defer cancel()
	if err := t.tx.Rollback(ctx); err != nil {
		return classify(err)
	}
	return nil
}

// Abort implements adapters.StoreTx: it closes the connection, as a process
// that dies does; the server aborts the open transaction.
func (t *Tx) Abort() error {
	if t.done {
		return nil
	}
	t.done = true
	ctx, cancel := t.s.ctx()
	defer cancel()
	err := t.conn.Conn().Close(ctx)
	t.conn.Release() // the pool drops a closed connection
	if err != nil {
		return classify(err)
	}
	return nil
}

// classify maps a pgx error to the harness's vocabulary.
func classify(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "40001", "40P01", "55P03":
			return fmt.Errorf("%w: %s (%s)", adapters.ErrConflict, pg.Message, pg.Code)
		case "23505":
			return fmt.Errorf("%w: %s", adapters.ErrExists, pg.Message)
		case "25P02": // in failed transaction: a conflict earlier in it
			return fmt.Errorf("%w: %s (%s)", adapters.ErrConflict, pg.Message, pg.Code)
		}
	}
	return fmt.Errorf("%w: postgres: %v", adapters.ErrBackend, err)
}
