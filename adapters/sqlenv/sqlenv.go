// Package sqlenv is how a handler writes SQL: on the pg backend the Env a
// handler or a dispatcher gets also opens pgx transactions, which the
// harness wraps. Exec is a write (a crash point after it), Commit is
// preceded and followed by crash points, and a crash closes the connection
// so that the server aborts the transaction. Unqualified table names
// resolve to the run's schema; the strategy's SQLSchema creates them.
//
// Only handlers that write SQL import this package (and pgx with it).
package sqlenv

import (
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/oncecheck/oncecheck/adapters"
)

// Env is implemented by the Env of the pg backend.
type Env interface {
	adapters.Env
	// BeginSQL opens a pgx transaction through the harness, at the run's
	// isolation level.
	BeginSQL() (pgx.Tx, error)
	// BeginSQLTx opens a pgx transaction through the harness with the
	// options a service passes to pgx (isolation level, access mode,
	// deferrable mode).
	BeginSQLTx(o pgx.TxOptions) (pgx.Tx, error)
}

// ErrNotSQL is returned by Begin and Tx on a backend without SQL.
var ErrNotSQL = errors.New("this handler writes SQL: run it on the pg backend")

// Begin opens a pgx transaction on env, or returns ErrNotSQL when env's
// backend has no SQL.
func Begin(env adapters.Env) (pgx.Tx, error) {
	e, ok := env.(Env)
	if !ok {
		return nil, ErrNotSQL
	}
	return e.BeginSQL()
}

// BeginTx opens a pgx transaction on env with the given options, as
// pgx.Conn.BeginTx does in the service's own code, or returns ErrNotSQL
// when env's backend has no SQL.
func BeginTx(env adapters.Env, o pgx.TxOptions) (pgx.Tx, error) {
	e, ok := env.(Env)
	if !ok {
		return nil, ErrNotSQL
	}
	return e.BeginSQLTx(o)
}

// Tx returns the pgx transaction behind a Tx of the pg backend (the one
// Handler.Observe receives), or ErrNotSQL on another backend.
func Tx(tx adapters.Tx) (pgx.Tx, error) {
	if p, ok := tx.(interface{ PGX() pgx.Tx }); ok {
		return p.PGX(), nil
	}
	return nil, ErrNotSQL
}
