package pgstore

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/storetest"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/internal/pgtest"
)

// dsn returns the PostgreSQL to test against. make test provides one
// (scripts/with-postgres.sh); without it the test fails: PostgreSQL is part
// of the product, never skipped.
func dsn(t *testing.T) string { return pgtest.DSN(t) }

func open(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn(t), o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o adapters.StoreOptions) adapters.Store {
		return open(t, Options{Isolation: o.Isolation, LockTimeout: o.LockWait, LockConflicts: o.LockConflicts})
	})
}

func schemaExists(t *testing.T, name string) bool {
	conn, err := pgx.Connect(context.Background(), dsn(t))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", name).Scan(&n))
	return n == 1
}

func TestEachStoreHasItsOwnSchemaDroppedOnClose(t *testing.T) {
	a, err := Open(context.Background(), dsn(t), Options{})
	require.NoError(t, err)
	b := open(t, Options{})
	require.NotEqual(t, a.Schema(), b.Schema())
	tx, err := a.Begin(adapters.TxOptions{})
	require.NoError(t, err)
	require.NoError(t, tx.Put("t", "k", []byte("a's")))
	require.NoError(t, tx.Commit())
	tx, err = b.Begin(adapters.TxOptions{})
	require.NoError(t, err)
	_, ok, err := tx.Get("t", "k")
	require.NoError(t, err)
	require.False(t, ok, "parallel stores never see each other")
	require.NoError(t, tx.Rollback())

	require.True(t, schemaExists(t, a.Schema()))
	require.NoError(t, a.Close())
	require.False(t, schemaExists(t, a.Schema()), "dropped on close")

	kept, err := Open(context.Background(), dsn(t), Options{Keep: true, Schema: "oncecheck test \"quoted\""})
	require.NoError(t, err)
	require.NoError(t, kept.Close())
	require.True(t, schemaExists(t, "oncecheck test \"quoted\""), "kept, and the odd name was quoted")
	cleanup, err := Open(context.Background(), dsn(t), Options{Schema: "oncecheck test \"quoted\""})
	require.NoError(t, err)
	require.NoError(t, cleanup.Close())
}

func TestUnreachableServerIsABackendFailure(t *testing.T) {
	_, err := Open(context.Background(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", Options{})
	require.Error(t, err)
	require.True(t, errors.Is(err, adapters.ErrBackend), "%v", err)
}

func TestAbortClosesTheConnection(t *testing.T) {
	s := open(t, Options{})
	tx, err := s.Begin(adapters.TxOptions{})
	require.NoError(t, err)
	require.NoError(t, tx.Put("t", "k", []byte("v")))
	pid := tx.(*Tx).conn.Conn().PgConn().PID()
	require.NoError(t, tx.Abort())
	conn, err := pgx.Connect(context.Background(), dsn(t))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	// Abort waits for the server to end the backend: its locks are gone
	// when it returns.
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n))
	require.Zero(t, n, "the crashed transaction's connection is gone")
}

// TestDeclaredTablesAreTablesOfTheirOwn: each declared table is a SQL table
// with its key as primary key and its value column typed, and a write
// through the key-value Tx lands there, readable with plain SQL.
func TestDeclaredTablesAreTablesOfTheirOwn(t *testing.T) {
	s := open(t, Options{})
	ctx := context.Background()
	for _, spec := range strategykit.Tables() {
		var pk string
		err := s.Pool().QueryRow(ctx, `SELECT a.attname FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = $1::regclass AND i.indisprimary`, s.Table(spec.Name)).Scan(&pk)
		require.NoError(t, err, spec.Name)
		require.Equal(t, spec.Key, pk, spec.Name)
		if spec.Value != "" {
			var typ string
			require.NoError(t, s.Pool().QueryRow(ctx, `SELECT data_type FROM information_schema.columns
				WHERE table_schema = $1 AND table_name = $2 AND column_name = $3`, s.Schema(), spec.Name, spec.Value).Scan(&typ))
			want := map[string]string{"": "text", "text": "text", "bigint": "bigint"}[spec.Type]
			require.Equal(t, want, typ, spec.Name)
		}
	}
	tx, err := s.Begin(adapters.TxOptions{})
	require.NoError(t, err)
	require.NoError(t, strategykit.PutCounter(tx, strategykit.VersionTable, "o1", 7))
	require.NoError(t, strategykit.SaveState(tx, "o1", []byte(`{"lines":{}}`)))
	require.NoError(t, tx.Commit())
	var version int64
	var state string
	require.NoError(t, s.Pool().QueryRow(ctx, "SELECT version FROM "+s.Table(strategykit.VersionTable)+" WHERE aggregate_id = 'o1'").Scan(&version))
	require.NoError(t, s.Pool().QueryRow(ctx, "SELECT state FROM "+s.Table(strategykit.StateTable)+" WHERE aggregate_id = 'o1'").Scan(&state))
	require.Equal(t, int64(7), version)
	require.Equal(t, `{"lines":{}}`, state)
	var generic int
	require.NoError(t, s.Pool().QueryRow(ctx, "SELECT count(*) FROM "+s.Table("anything-else")).Scan(&generic))
	require.Zero(t, generic, "declared tables do not go to the generic table")
}
