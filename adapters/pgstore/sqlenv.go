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
func (s *Store) ExtendEnv(env adapters.Env, begin func() (adapters.HarnessedTx, error)) adapters.Env {
	return sqlEnv{Env: env, begin: begin}
}

type sqlEnv struct {
	adapters.Env
	begin func() (adapters.HarnessedTx, error)
}

var _ sqlenv.Env = sqlEnv{}

// BeginSQL implements sqlenv.Env.
func (e sqlEnv) BeginSQL() (pgx.Tx, error) {
	t, err := e.begin()
	if err != nil {
		return nil, err
	}
	inner, ok := t.StoreTx().(*Tx)
	if !ok {
		_ = t.Rollback()
		return nil, fmt.Errorf("pgstore: the harness opened a %T, not a pgstore transaction", t.StoreTx())
	}
	return &sqlTx{Tx: inner.tx, t: t}, nil
}

// sqlTx is the pgx.Tx a SQL handler gets: statements pass through; Exec
// records a write and is a crash point; Commit and Rollback go through the
// harness's transaction (crash points before and after the commit). A
// backend failure in any statement stops the run.
type sqlTx struct {
	pgx.Tx
	t adapters.HarnessedTx
}

func (s *sqlTx) check(err error) error {
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	return s.t.Check(classify(err))
}

// Exec implements pgx.Tx.
func (s *sqlTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := s.Tx.Exec(ctx, sql, args...)
	if err != nil {
		return tag, s.check(err)
	}
	s.t.Wrote(statement(sql))
	return tag, nil
}

// Query implements pgx.Tx.
func (s *sqlTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := s.Tx.Query(ctx, sql, args...)
	if err = s.check(err); err == nil {
		s.t.Read()
	}
	return rows, err
}

// QueryRow implements pgx.Tx.
func (s *sqlTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return checkedRow{s.Tx.QueryRow(ctx, sql, args...), s}
}

type checkedRow struct {
	pgx.Row
	s *sqlTx
}

func (r checkedRow) Scan(dest ...any) error {
	err := r.s.check(r.Row.Scan(dest...))
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
