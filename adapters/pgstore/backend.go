package pgstore

import (
	"context"
	"fmt"
	"os"

	"github.com/oncecheck/oncecheck/adapters"
)

// DSNEnv is the environment variable that names the PostgreSQL server of a
// Backend without a DSN.
const DSNEnv = "ONCECHECK_PG"

// Backend is the PostgreSQL backend: each store it opens is a schema of its
// own on the server DSN names.
type Backend struct {
	// DSN names the server (default: $ONCECHECK_PG).
	DSN string
	// Keep leaves each store's schema in place on Close, for inspection.
	Keep bool
}

var _ adapters.Backend = Backend{}

// Name implements adapters.Backend.
func (Backend) Name() string { return "pg" }

// Open implements adapters.Backend: a fresh schema, with a connection for
// each process that may hold a transaction, and one more each for the
// harness.
func (b Backend) Open(o adapters.StoreOptions) (adapters.Store, error) {
	dsn := b.DSN
	if dsn == "" {
		dsn = os.Getenv(DSNEnv)
	}
	if dsn == "" {
		return nil, fmt.Errorf("the pg backend: %w: set $%s to a PostgreSQL DSN", adapters.ErrNoServer, DSNEnv)
	}
	// A process may hold a transaction while the harness reads with another.
	conns := int32(2 * (max(o.Processes, 4) + 1))
	return Open(context.Background(), dsn, Options{Keep: b.Keep, DDL: o.DDL, MaxConns: conns,
		Isolation: o.Isolation, LockTimeout: o.LockWait, LockConflicts: o.LockConflicts})
}
