// Package pgstore is the PostgreSQL backend, through pgx. Each run works in
// a schema of its own, and each transaction is a real PostgreSQL
// transaction. Every table the strategies use is a SQL table of its own
// (see strategykit.Tables): the aggregates' states, the processed-message ids,
// the outbox, the positions, versions and reservations, each with its key
// as primary key. The key-value operations of adapters.Tx become the
// statements a service would write: SELECT ... FOR UPDATE to read a row it
// will change (GetForUpdate), INSERT ... ON CONFLICT DO NOTHING for a unique
// insert, INSERT ... ON CONFLICT DO UPDATE for an upsert. A table no
// declaration names lives in a generic table of keys and values.
//
// Transactions run at the isolation level they ask for, by default the
// store's (Options.Isolation, read committed unless set), with no lock
// timeout unless one is set: PostgreSQL's own behaviour. Serialization
// failures (40001) and deadlocks (40P01) are conflicts a real consumer
// retries (adapters.ErrConflict; the harness nacks the delivery).
//
// Under the harness's scheduler (SetLockScheduler) one process runs at a
// time, so a statement that waits for a row lock held by a parked process
// would wait forever. Each statement therefore runs beside the task: when
// it has not returned within a moment, the store asks the server whom it
// waits for (pg_blocking_pids), parks the task as blocked on that
// transaction, and lets the scheduler run the others; the holder's commit
// or rollback makes the task runnable again, and the server hands it the
// lock. A wait that closes a cycle is a deadlock: the store cancels the
// statement of the cycle's first waiter, as PostgreSQL's own detector
// would, before PostgreSQL's deadlock_timeout runs out. A crash closes the
// transaction's connection, so the server aborts what was open. A SQL
// handler's Exec, Query (and its rows) and QueryRow are watched so;
// SendBatch, CopyFrom and the large-object API are not: a lock wait in
// one of them blocks the run, whose lock holder is parked, until the
// handler's context ends.
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
	"github.com/oncecheck/oncecheck/adapters/strategykit"
)

// legacyLockTimeout is the lock timeout of a store with
// Options.LockConflicts: long enough for the server to notice the lock,
// short enough to fail "at once".
const legacyLockTimeout = 100 * time.Millisecond

// Options configure a Store.
type Options struct {
	// Schema names the schema to create; "" picks a fresh one.
	Schema string
	// Keep leaves the schema in place on Close, for inspection.
	Keep bool
	// Timeout bounds each statement (default 10s).
	Timeout time.Duration
	// MaxConns bounds the pool's connections (at least 8): at least one
	// per process that may hold a transaction at once.
	MaxConns int32
	// DDL creates the tables of handlers that write SQL, in the schema
	// (see adapters.Strategy.SQLSchema). With DDL, the declared tables of
	// strategykit.Tables are not created: every key-value table is generic.
	DDL string
	// Isolation is the level of transactions that ask for none (default
	// read committed).
	Isolation adapters.Isolation
	// LockTimeout, if set, is the lock_timeout of every transaction.
	LockTimeout time.Duration
	// LockConflicts runs as histories before format 1.3 did (see
	// adapters.StoreOptions.LockConflicts).
	LockConflicts bool
}

// Store is a PostgreSQL backend in a schema of its own.
type Store struct {
	pool    *pgxpool.Pool
	schema  string
	table   string // the generic table, quoted and schema-qualified
	keep    bool
	timeout time.Duration
	tables  map[string]statements // of the declared tables

	level         adapters.Isolation
	lockTimeout   time.Duration
	lockConflicts bool
	locks         lockWaits
}

// statements are the SQL of one table's operations. The key is $1 and the
// value $2; the generic table also takes the table's name, last.
type statements struct {
	get, getForUpdate, put, insert, delete, scan, claim string
	keysOnly                                            bool // the table has no value column
	generic                                             bool
}

func declared(schema string, t strategykit.TableSpec) statements {
	name := pgx.Identifier{schema, t.Name}.Sanitize()
	key := pgx.Identifier{t.Key}.Sanitize()
	if t.Value == "" {
		return statements{
			get:          fmt.Sprintf("SELECT NULL::text FROM %s WHERE %s = $1", name, key),
			put:          fmt.Sprintf("INSERT INTO %s AS t (%s) VALUES ($1) ON CONFLICT (%s) DO UPDATE SET %s = t.%s", name, key, key, key, key),
			insert:       fmt.Sprintf("INSERT INTO %s (%s) VALUES ($1) ON CONFLICT (%s) DO NOTHING", name, key, key),
			delete:       fmt.Sprintf("DELETE FROM %s WHERE %s = $1", name, key),
			scan:         fmt.Sprintf("SELECT %s, NULL::text FROM %s ORDER BY %s", key, name, key),
			claim:        fmt.Sprintf("SELECT %s, NULL::text FROM %s ORDER BY %s FOR UPDATE SKIP LOCKED", key, name, key),
			getForUpdate: fmt.Sprintf("SELECT NULL::text FROM %s WHERE %s = $1 FOR UPDATE", name, key),
			keysOnly:     true,
		}
	}
	value := pgx.Identifier{t.Value}.Sanitize()
	typ := "text"
	if t.Type != "" {
		typ = t.Type
	}
	return statements{
		get:          fmt.Sprintf("SELECT %s::text FROM %s WHERE %s = $1", value, name, key),
		getForUpdate: fmt.Sprintf("SELECT %s::text FROM %s WHERE %s = $1 FOR UPDATE", value, name, key),
		put: fmt.Sprintf("INSERT INTO %s (%s, %s) VALUES ($1, $2::text::%s) ON CONFLICT (%s) DO UPDATE SET %s = excluded.%s",
			name, key, value, typ, key, value, value),
		insert: fmt.Sprintf("INSERT INTO %s (%s, %s) VALUES ($1, $2::text::%s) ON CONFLICT (%s) DO NOTHING", name, key, value, typ, key),
		delete: fmt.Sprintf("DELETE FROM %s WHERE %s = $1", name, key),
		scan:   fmt.Sprintf("SELECT %s, %s::text FROM %s ORDER BY %s", key, value, name, key),
		claim:  fmt.Sprintf("SELECT %s, %s::text FROM %s ORDER BY %s FOR UPDATE SKIP LOCKED", key, value, name, key),
	}
}

func generic(table string) statements {
	return statements{
		get:          "SELECT value FROM " + table + " WHERE key = $1 AND tbl = $2",
		getForUpdate: "SELECT value FROM " + table + " WHERE key = $1 AND tbl = $2 FOR UPDATE",
		put:          "INSERT INTO " + table + " (key, value, tbl) VALUES ($1, $2, $3) ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value",
		insert:       "INSERT INTO " + table + " (key, value, tbl) VALUES ($1, $2, $3) ON CONFLICT (tbl, key) DO NOTHING",
		delete:       "DELETE FROM " + table + " WHERE key = $1 AND tbl = $2",
		scan:         "SELECT key, value FROM " + table + " WHERE tbl = $1 ORDER BY key",
		claim:        "SELECT key, value FROM " + table + " WHERE tbl = $1 ORDER BY key FOR UPDATE SKIP LOCKED",
		generic:      true,
	}
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
		return nil, fmt.Errorf("postgres DSN: %w", err) // pgx's error masks the password
	}
	cfg.MaxConns = max(8, o.MaxConns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to postgres: %v", adapters.ErrBackend, err)
	}
	if o.Schema == "" {
		var b [6]byte
		_, _ = rand.Read(b[:]) // a name unique across processes; it never reaches a run
		o.Schema = fmt.Sprintf("oncecheck_%x_%d", b, schemas.Add(1))
	}
	s := &Store{pool: pool, schema: o.Schema, keep: o.Keep, timeout: o.Timeout, tables: map[string]statements{},
		level: o.Isolation.Or(adapters.ReadCommitted), lockTimeout: o.LockTimeout, lockConflicts: o.LockConflicts}
	if o.LockConflicts {
		s.level, s.lockTimeout = adapters.RepeatableRead, legacyLockTimeout
	}
	s.table = pgx.Identifier{o.Schema, "kv"}.Sanitize()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	ddl := fmt.Sprintf(`CREATE SCHEMA IF NOT EXISTS %s;
CREATE TABLE IF NOT EXISTS %s (tbl text NOT NULL, key text COLLATE "C" NOT NULL, value bytea, PRIMARY KEY (tbl, key));
COMMENT ON TABLE %s IS 'rows of the tables no declaration names, by table and key'`,
		pgx.Identifier{o.Schema}.Sanitize(), s.table, s.table)
	if _, err := pool.Exec(ctx, ddl); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: cannot use postgres at %s: %v", adapters.ErrBackend, describe(cfg.ConnConfig), err)
	}
	// The declared tables are the built-in strategies'. A handler that
	// writes SQL brings its own tables (which may well be called outbox):
	// its key-value rows, if any, go to the generic table.
	var tables []string
	if o.DDL == "" {
		for _, t := range strategykit.Tables() {
			tables = append(tables, tableDDL(t))
			s.tables[t.Name] = declared(o.Schema, t)
		}
	}
	for _, step := range []struct{ what, ddl string }{
		{"the strategies' tables", strings.Join(tables, "\n")},
		{"the handler's tables", o.DDL},
	} {
		if step.ddl == "" {
			continue
		}
		tx, err := pool.Begin(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{o.Schema}.Sanitize())
		}
		if err == nil {
			_, err = tx.Exec(ctx, step.ddl)
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			if tx != nil {
				_ = tx.Rollback(ctx)
			}
			pool.Close()
			return nil, fmt.Errorf("create %s: %w", step.what, err)
		}
	}
	return s, nil
}

// sql returns the statements of a table's operations.
func (s *Store) sql(table string) statements {
	if st, ok := s.tables[table]; ok {
		return st
	}
	return generic(s.table)
}

func describe(c *pgx.ConnConfig) string { return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database) }

// Schema returns the store's schema name.
func (s *Store) Schema() string { return s.schema }

// Pool returns the connection pool (for benchmarks and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Table returns the quoted, schema-qualified name of a declared table (see
// strategykit.Tables), or of the generic table for any other name.
func (s *Store) Table(name string) string {
	if _, ok := s.tables[name]; ok {
		return pgx.Identifier{s.schema, name}.Sanitize()
	}
	return s.table
}

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

// Begin implements adapters.Store.
func (s *Store) Begin(o adapters.TxOptions) (adapters.StoreTx, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, classify(err)
	}
	opts := pgx.TxOptions{IsoLevel: isoLevel(o.Isolation.Or(s.level))}
	if o.ReadOnly || o.Deferrable {
		opts.AccessMode = pgx.ReadOnly
	}
	if o.Deferrable {
		opts.DeferrableMode = pgx.Deferrable
	}
	tx, err := conn.BeginTx(ctx, opts)
	if err != nil {
		conn.Release()
		return nil, classify(err)
	}
	// Unqualified names resolve to the schema. SET takes no snapshot: a
	// repeatable-read snapshot is taken at the first statement, as in
	// any PostgreSQL transaction (but at Begin for LockConflicts, as
	// histories before 1.3 ran).
	setup := "SET LOCAL search_path TO " + pgx.Identifier{s.schema}.Sanitize()
	if s.lockTimeout > 0 {
		setup += fmt.Sprintf("; SET LOCAL lock_timeout = '%dms'", s.lockTimeout.Milliseconds())
	}
	if s.lockConflicts {
		setup += "; SELECT 1"
	}
	if _, err := tx.Exec(ctx, setup); err != nil {
		_ = tx.Rollback(ctx)
		conn.Release()
		return nil, classify(err)
	}
	t := &Tx{s: s, conn: conn, tx: tx, pid: conn.Conn().PgConn().PID()}
	s.locks.opened(t)
	return t, nil
}

func isoLevel(l adapters.Isolation) pgx.TxIsoLevel {
	switch l {
	case adapters.RepeatableRead:
		return pgx.RepeatableRead
	case adapters.Serializable:
		return pgx.Serializable
	}
	return pgx.ReadCommitted
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
	// A DELETE of the few rows of a run is far cheaper than a TRUNCATE,
	// which rewrites every table's files. Tables of a handler's own DDL
	// are truncated, to restart their sequences too.
	var deletes, truncate []string
	for _, n := range names {
		q := pgx.Identifier{s.schema, n}.Sanitize()
		if _, ok := s.tables[n]; ok || q == s.table {
			deletes = append(deletes, "DELETE FROM "+q)
		} else {
			truncate = append(truncate, q)
		}
	}
	if len(truncate) > 0 {
		deletes = append(deletes, "TRUNCATE "+strings.Join(truncate, ", ")+" RESTART IDENTITY")
	}
	if _, err := s.pool.Exec(ctx, strings.Join(deletes, "; ")); err != nil {
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
	// After a backend failure (the server restarted, a connection was
	// cut) the pool's first attempts may fail on dead connections: try
	// again until the timeout, so that the schema is dropped once the
	// server answers again.
	ctx, cancel := s.ctx()
	defer cancel()
	drop := "DROP SCHEMA IF EXISTS " + pgx.Identifier{s.schema}.Sanitize() + " CASCADE"
	for {
		_, err := s.pool.Exec(ctx, drop)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("schema %s left on the server (drop it by hand): %w", s.schema, classify(err))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Tx is a transaction of a Store, on a connection of its own.
type Tx struct {
	s      *Store
	conn   *pgxpool.Conn
	tx     pgx.Tx
	pid    uint32 // the server process of its connection
	writes []string
	done   bool
	victim bool // chosen as a deadlock's victim while it waited
}

var (
	_ adapters.StoreTx = (*Tx)(nil)
	_ adapters.Store   = (*Store)(nil)
)

// ErrDone is returned by operations on a finished transaction.
var ErrDone = errors.New("transaction already finished")

// args returns a statement's arguments: the key, the value (as text for a
// declared table's typed column), and the table's name for the generic
// table.
func (st statements) args(table, key string, value []byte, withValue bool) ([]any, error) {
	switch {
	case st.generic && withValue:
		return []any{key, value, table}, nil
	case st.generic:
		return []any{key, table}, nil
	case st.keysOnly:
		if withValue && value != nil {
			return nil, fmt.Errorf("table %s records keys only: no value may be written", table)
		}
		return []any{key}, nil
	case withValue:
		return []any{key, string(value)}, nil
	}
	return []any{key}, nil
}

// Get implements adapters.Tx.
func (t *Tx) Get(table, key string) ([]byte, bool, error) {
	st := t.s.sql(table)
	return t.get(table, key, st.get)
}

// GetForUpdate implements adapters.Tx with SELECT ... FOR UPDATE.
func (t *Tx) GetForUpdate(table, key string) ([]byte, bool, error) {
	st := t.s.sql(table)
	return t.get(table, key, st.getForUpdate)
}

func (t *Tx) get(table, key, sql string) ([]byte, bool, error) {
	if t.done {
		return nil, false, ErrDone
	}
	ctx, cancel := t.s.ctx()
	defer cancel()
	args, err := t.s.sql(table).args(table, key, nil, false)
	if err != nil {
		return nil, false, err
	}
	var v []byte
	err = t.statement(ctx, cancel, table+"/"+key, func(ctx context.Context) error { return t.tx.QueryRow(ctx, sql, args...).Scan(&v) })
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, classify(err)
	}
	return v, true, nil
}

func (t *Tx) exec(table, key string, value []byte, withValue bool, sql string) (pgconn.CommandTag, error) {
	if t.done {
		return pgconn.CommandTag{}, ErrDone
	}
	args, err := t.s.sql(table).args(table, key, value, withValue)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	ctx, cancel := t.s.ctx()
	defer cancel()
	var tag pgconn.CommandTag
	err = t.statement(ctx, cancel, table+"/"+key, func(ctx context.Context) (err error) {
		tag, err = t.tx.Exec(ctx, sql, args...)
		return err
	})
	if err != nil {
		return tag, classify(err)
	}
	return tag, nil
}

// Put implements adapters.Tx: an upsert.
func (t *Tx) Put(table, key string, value []byte) error {
	_, err := t.exec(table, key, value, true, t.s.sql(table).put)
	if err == nil {
		t.writes = append(t.writes, table+"/"+key)
	}
	return err
}

// Insert implements adapters.Tx: a unique insert.
func (t *Tx) Insert(table, key string, value []byte) error {
	tag, err := t.exec(table, key, value, true, t.s.sql(table).insert)
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
	_, err := t.exec(table, key, nil, false, t.s.sql(table).delete)
	if err == nil {
		t.writes = append(t.writes, table+"/"+key)
	}
	return err
}

// Scan implements adapters.Tx, in byte order of the keys.
func (t *Tx) Scan(table string) ([]adapters.Row, error) {
	return t.rows(table, t.s.sql(table).scan)
}

// Claim implements adapters.Tx with SELECT ... FOR UPDATE SKIP LOCKED.
func (t *Tx) Claim(table string) ([]adapters.Row, error) {
	return t.rows(table, t.s.sql(table).claim)
}

func (t *Tx) rows(table, sql string) ([]adapters.Row, error) {
	if t.done {
		return nil, ErrDone
	}
	ctx, cancel := t.s.ctx()
	defer cancel()
	var args []any
	if t.s.sql(table).generic {
		args = []any{table}
	}
	var out []adapters.Row
	err := t.statement(ctx, cancel, "table "+table, func(ctx context.Context) error {
		rows, err := t.tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (adapters.Row, error) {
			var row adapters.Row
			err := r.Scan(&row.Key, &row.Value)
			return row, err
		})
		return err
	})
	if err != nil {
		return nil, classify(err)
	}
	return out, nil
}

// PGX returns the transaction itself, for handlers that write SQL.
func (t *Tx) PGX() pgx.Tx { return t.tx }

// Writes implements adapters.StoreTx.
func (t *Tx) Writes() []string { return append([]string(nil), t.writes...) }

// Commit implements adapters.Tx.
func (t *Tx) Commit() error {
	if t.done {
		return ErrDone
	}
	t.done = true
	defer t.conn.Release()
	defer t.s.locks.ended(t)
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
	defer t.s.locks.ended(t)
	ctx, cancel := t.s.ctx()
	defer cancel()
	if err := t.tx.Rollback(ctx); err != nil {
		return classify(err)
	}
	return nil
}

// Abort implements adapters.StoreTx: it closes the connection, as a process
// that dies does; the server aborts the open transaction. The server
// notices a closed connection on its own time, so Abort then waits until
// the backend is gone: until then it still holds the transaction's locks,
// and the next process (a dispatcher claiming outbox rows with SKIP LOCKED)
// would find rows that a crash left behind locked, not there to retry.
func (t *Tx) Abort() error {
	if t.done {
		return nil
	}
	t.done = true
	defer t.s.locks.ended(t)
	ctx, cancel := t.s.ctx()
	defer cancel()
	pid := t.pid
	err := t.conn.Conn().Close(ctx)
	t.conn.Release() // the pool drops a closed connection
	if err != nil {
		return classify(err)
	}
	for {
		var alive bool
		if err := t.s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid).Scan(&alive); err != nil {
			return classify(err)
		}
		if !alive {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: the server kept the backend of a closed connection (pid %d) for %s", adapters.ErrBackend, pid, t.s.timeout)
		case <-time.After(time.Millisecond):
		}
	}
}

// classify maps a pgx error to the harness's vocabulary.
func classify(err error) error {
	if errors.Is(err, adapters.ErrConflict) || errors.Is(err, adapters.ErrBackend) {
		return err // classified already (a deadlock's victim, a failed lock check)
	}
	if errors.Is(err, pgx.ErrTxCommitRollback) {
		// A commit of a transaction that a conflict had aborted.
		return fmt.Errorf("%w: %v", adapters.ErrConflict, err)
	}
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
