package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/sqlenv"
)

var _ adapters.EnvExtender = (*Store)(nil)

// ExtendEnv implements adapters.EnvExtender: a handler's Env on this
// backend is a sqlenv.Env too.
func (s *Store) ExtendEnv(env adapters.Env, begin func(adapters.TxOptions) (adapters.HarnessedTx, error)) adapters.Env {
	return sqlEnv{Env: env, begin: begin}
}

type sqlEnv struct {
	adapters.Env
	begin func(adapters.TxOptions) (adapters.HarnessedTx, error)
}

var _ sqlenv.Env = sqlEnv{}

// BeginSQL implements sqlenv.Env.
func (e sqlEnv) BeginSQL() (pgx.Tx, error) { return e.BeginSQLTx(pgx.TxOptions{}) }

// BeginSQLTx implements sqlenv.Env: the transaction runs with the
// options' isolation level, access mode and deferrable mode; a level
// PostgreSQL does not have on its own (read uncommitted) is read
// committed, as on the server.
func (e sqlEnv) BeginSQLTx(o pgx.TxOptions) (pgx.Tx, error) {
	opts, err := txOptions(o)
	if err != nil {
		return nil, err
	}
	t, err := e.begin(opts)
	if err != nil {
		return nil, err
	}
	inner, ok := t.StoreTx().(*Tx)
	if !ok {
		_ = t.Rollback()
		return nil, fmt.Errorf("pgstore: the harness opened a %T, not a pgstore transaction", t.StoreTx())
	}
	return &sqlTx{Tx: inner.tx, inner: inner, t: t}, nil
}

// txOptions maps pgx's transaction options to the harness's.
func txOptions(o pgx.TxOptions) (adapters.TxOptions, error) {
	var opts adapters.TxOptions
	switch o.IsoLevel {
	case "":
	case pgx.ReadUncommitted, pgx.ReadCommitted:
		opts.Isolation = adapters.ReadCommitted
	case pgx.RepeatableRead:
		opts.Isolation = adapters.RepeatableRead
	case pgx.Serializable:
		opts.Isolation = adapters.Serializable
	default:
		return opts, fmt.Errorf("pgstore: unknown isolation level %q", o.IsoLevel)
	}
	opts.ReadOnly = o.AccessMode == pgx.ReadOnly
	opts.Deferrable = o.DeferrableMode == pgx.Deferrable
	if o.BeginQuery != "" || o.CommitQuery != "" {
		return opts, errors.New("pgstore: pgx.TxOptions.BeginQuery and CommitQuery are not supported: the harness begins and commits the transaction")
	}
	return opts, nil
}

// sqlTx is the pgx.Tx a SQL handler gets: statements pass through (and
// may wait for locks under the scheduler, see the package doc); Exec
// records a write and is a crash point; Commit and Rollback go through the
// harness's transaction (crash points before and after the commit). A
// backend failure in any statement stops the run.
type sqlTx struct {
	pgx.Tx
	inner *Tx
	t     adapters.HarnessedTx
}

func (s *sqlTx) check(err error) error {
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	return s.t.Check(classify(err))
}

// Exec implements pgx.Tx.
func (s *sqlTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := s.inner.statement(ctx, cancel, statement(sql), func(ctx context.Context) (err error) {
		tag, err = s.Tx.Exec(ctx, sql, args...)
		return err
	})
	if err != nil {
		return tag, s.check(err)
	}
	s.t.Wrote(statement(sql))
	return tag, nil
}

// Query implements pgx.Tx.
func (s *sqlTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := s.query(ctx, sql, args)
	if err = s.check(err); err == nil {
		s.t.Read()
	}
	return rows, err
}

// query runs a query whose rows may each wait for a lock (FOR UPDATE).
func (s *sqlTx) query(ctx context.Context, sql string, args []any) (pgx.Rows, error) {
	ctx, cancel := context.WithCancel(ctx)
	what := statement(sql)
	var rows pgx.Rows
	err := s.inner.statement(ctx, cancel, what, func(ctx context.Context) (err error) {
		rows, err = s.Tx.Query(ctx, sql, args...)
		return err
	})
	if err != nil {
		cancel()
		return nil, err
	}
	return &lockedRows{Rows: rows, tx: s.inner, cancel: cancel, what: what}, nil
}

// lockedRows are the rows of a query, each of which may wait for a lock.
type lockedRows struct {
	pgx.Rows
	tx     *Tx
	cancel context.CancelFunc
	what   string
	err    error
}

func (r *lockedRows) Next() bool {
	more := false
	if err := r.tx.statement(context.Background(), r.cancel, r.what, func(context.Context) error {
		more = r.Rows.Next()
		return nil
	}); err != nil {
		r.err = err
		r.Rows.Close()
		return false
	}
	if !more {
		r.cancel()
	}
	return more
}

func (r *lockedRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.Rows.Err()
}

func (r *lockedRows) Close() {
	r.Rows.Close()
	r.cancel()
}

// QueryRow implements pgx.Tx.
func (s *sqlTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return checkedRow{ctx: ctx, sql: sql, args: args, s: s}
}

type checkedRow struct {
	ctx  context.Context
	sql  string
	args []any
	s    *sqlTx
}

func (r checkedRow) Scan(dest ...any) error {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	err := r.s.inner.statement(ctx, cancel, statement(r.sql), func(ctx context.Context) error {
		return r.s.Tx.QueryRow(ctx, r.sql, r.args...).Scan(dest...)
	})
	err = r.s.check(err)
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		r.s.t.Read()
	}
	return err
}

// Commit implements pgx.Tx through the harness.
func (s *sqlTx) Commit(context.Context) error { return s.t.Commit() }

// Rollback implements pgx.Tx through the harness.
func (s *sqlTx) Rollback(context.Context) error { return s.t.Rollback() }

// statement names a SQL statement for the timeline: its first words.
func statement(sql string) string {
	words := strings.Fields(sql)
	if len(words) > 3 {
		words = words[:3]
	}
	return fmt.Sprintf("sql: %s", strings.Join(words, " "))
}
