package adapters

import (
	"errors"
	"time"
)

// Store is a backend as the harness uses it: it hands out transactions
// (which it wraps before adapters see them) and is emptied between runs.
type Store interface {
	// Begin opens a transaction with the given options (the zero value:
	// the store's isolation level, read-write).
	Begin(o TxOptions) (StoreTx, error)
	// Reset empties the store for the next run.
	Reset() error
	// Close releases the store (and drops what it created).
	Close() error
}

// StoreTx is a transaction of a Store.
type StoreTx interface {
	Tx
	// Writes returns the keys written so far, as "table/key", in order.
	Writes() []string
	// Abort ends the transaction as a crash does: the process is gone, so
	// nothing of it may commit (a database connection is closed and the
	// server aborts what was open).
	Abort() error
}

// Backend is a kind of Store: the in-memory one (package memstore) or
// PostgreSQL (package pgstore). A campaign opens the stores its runs use
// through it, and a history names it.
type Backend interface {
	// Name names the backend in histories ("mem", "pg").
	Name() string
	// Open returns an empty store. A run has a store to itself, emptied
	// (Reset) before the run; a campaign that runs cases in parallel opens
	// one store per run at a time.
	Open(o StoreOptions) (Store, error)
}

// StoreOptions say what a store must offer the runs of a campaign.
type StoreOptions struct {
	// DDL creates the tables of a handler that writes SQL (see
	// Strategy.SQLSchema); a backend without SQL refuses it.
	DDL string
	// Processes is the number of processes that may hold a transaction at
	// once.
	Processes int
	// Isolation is the level of transactions that ask for none (zero:
	// ReadCommitted).
	Isolation Isolation
	// LockWait is a lock timeout: how long a write waits for a lock that
	// another transaction holds before it fails with ErrConflict. Zero
	// waits until the holder ends, as PostgreSQL does by default.
	LockWait time.Duration
	// LockConflicts is how histories before format 1.3 ran: at repeatable
	// read, with the snapshot taken at Begin, and a write that meets a row
	// lock failing at once with ErrConflict instead of waiting. Only for
	// replaying such a history.
	LockConflicts bool
}

// EnvExtender is a Store whose handlers get more than Env: the pg backend
// gives SQL transactions (package sqlenv). The harness passes every Env it
// hands a handler or a dispatcher through ExtendEnv; begin opens a
// transaction through the harness, as Env.BeginTx does.
type EnvExtender interface {
	ExtendEnv(env Env, begin func(TxOptions) (HarnessedTx, error)) Env
}

// HarnessedTx is a store transaction as the harness holds it, for a
// backend's own kind of transaction: its Commit and Rollback are the
// harness's (crash points before and after the commit, the history).
type HarnessedTx interface {
	// StoreTx returns the store's own transaction.
	StoreTx() StoreTx
	// Wrote records a write made on StoreTx around the harness (a SQL
	// statement, named by what); it is a crash point.
	Wrote(what string)
	// Read marks a read made on StoreTx around the harness (a SQL query),
	// after it: a scheduling point.
	Read()
	// Check passes an error of such a statement on: a backend failure
	// (ErrBackend) ends the run there.
	Check(err error) error
	// Commit commits through the harness.
	Commit() error
	// Rollback rolls back through the harness.
	Rollback() error
}

// ErrNoServer is returned by a Backend's Open when no server is named (the
// pg backend without a DSN): a test may skip rather than fail.
var ErrNoServer = errors.New("no server named")
