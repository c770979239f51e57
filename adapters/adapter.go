// Package adapters defines the contract between oncecheck and a message
// handler (an adapter), and keeps the catalogue of built-in strategies.
//
// An adapter is a handler written the way a real service would write it,
// against the harness's Env: it opens transactions on the backend's store,
// publishes outputs through the broker, and acks or nacks its delivery. The
// harness owns every one of those boundaries, so it can crash the process at
// each of them without the adapter's help; an adapter may name further crash
// points with Env.Point.
//
// What an adapter must not do: keep state that matters in memory (a crash
// loses it, a restart builds a fresh adapter from its factory), read the
// wall clock or global randomness (ask Env.NewID for fresh ids), or start
// goroutines.
package adapters

import (
	"errors"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// ErrExists is returned by Tx.Insert when the key is already present (a
// unique-constraint violation).
var ErrExists = errors.New("key already exists")

// ErrConflict is returned by Tx.Commit when another transaction committed a
// conflicting write first. The harness treats it like a real consumer does:
// the delivery is nacked and retried.
var ErrConflict = errors.New("transaction conflict")

// ErrBackend wraps failures of the store itself (a database that cannot be
// reached or fails mid-run), as opposed to the conflicts and unique
// violations a handler deals with. The harness makes such a run
// inconclusive.
var ErrBackend = errors.New("backend failure")

// Store is a backend as the harness uses it: it hands out transactions
// (which it wraps before adapters see them) and is emptied between runs.
type Store interface {
	// Begin opens a transaction.
	Begin() (StoreTx, error)
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

// Row is one key and value of a table.
type Row struct {
	Key   string
	Value []byte
}

// Tx is a transaction on the backend's store: tables of keys and values.
// Reads see the transaction's own writes. Commit is atomic.
type Tx interface {
	// Get reads a key; ok is false when it is absent.
	Get(table, key string) (value []byte, ok bool, err error)
	// GetForUpdate reads a key the transaction means to write, and takes
	// its write lock as SELECT ... FOR UPDATE does: ErrConflict when
	// another open transaction holds the lock or the key changed since
	// this transaction's snapshot. (On PostgreSQL a key that does not
	// exist yet has no row to lock: the conflict comes at the write.)
	GetForUpdate(table, key string) (value []byte, ok bool, err error)
	// Put writes a key, creating or replacing it.
	Put(table, key string, value []byte) error
	// Insert writes a key that must not exist yet; otherwise ErrExists.
	Insert(table, key string, value []byte) error
	// Delete removes a key (no error if absent).
	Delete(table, key string) error
	// Scan returns the rows of a table, sorted by key.
	Scan(table string) ([]Row, error)
	// Claim returns the rows of a table that no other open transaction
	// holds, sorted by key, each now locked for this one, as SELECT ... FOR
	// UPDATE SKIP LOCKED does: how a dispatcher takes outbox rows that a
	// competing dispatcher is not already publishing. A row changed since
	// the snapshot is a conflict (ErrConflict), as on PostgreSQL.
	Claim(table string) ([]Row, error)
	// Commit makes the writes durable, atomically.
	Commit() error
	// Rollback discards the writes. It is safe after Commit (no-op).
	Rollback() error
}

// Env is what the harness hands a handler for one delivery, or a dispatcher
// for one pass.
type Env interface {
	// Model is the business logic the handler applies.
	Model() model.Model
	// Begin opens a transaction on the backend's store.
	Begin() (Tx, error)
	// Publish sends outputs to the broker, one publish per message, in
	// order. An error means the broker did not confirm a publish.
	Publish(msgs ...model.Message) error
	// Ack acknowledges the delivery: the broker will not deliver this copy
	// again (unless the ack is lost). Not available to dispatchers.
	Ack() error
	// Nack gives the delivery back to the broker for a later retry.
	Nack(reason string) error
	// NewID returns a fresh, unique message id: what a random UUID is in a
	// real service, but deterministic in the simulation.
	NewID() string
	// Point marks a crash point of the adapter's own; the harness may crash
	// the process here.
	Point(name string)
}

// SQLEnv is implemented by the Env of the pg backend: a handler (or a
// dispatcher) that writes SQL asks it for a transaction. The harness wraps
// the pgx.Tx it returns: Exec is a write (a crash point after it), Commit is
// preceded and followed by crash points, and a crash closes the connection
// so the server aborts the transaction. Unqualified table names resolve to
// the run's schema. On the mem backend, the Env does not implement it.
type SQLEnv interface {
	BeginSQL() (pgx.Tx, error)
}

// SQL returns the pgx transaction behind a Tx of the pg backend (the one
// Observe receives), or an error on another backend.
func SQL(tx Tx) (pgx.Tx, error) {
	if p, ok := tx.(interface{ PGX() pgx.Tx }); ok {
		return p.PGX(), nil
	}
	return nil, errors.New("this handler writes SQL: run it on the pg backend")
}

// Handler handles deliveries. A handler instance lives as long as its
// consumer process: a crash throws it away and a restart builds a new one.
type Handler interface {
	// Handle processes one delivered copy. Returning an error (or returning
	// without Ack or Nack) makes the harness nack the delivery.
	Handle(env Env, msg model.Message) error
	// Observe reads the durable state of an aggregate, in the model's
	// representation, after the run.
	Observe(tx Tx, m model.Model, aggregate string) (model.State, error)
}

// Dispatcher is an optional second process that publishes outputs stored by
// the handler (an outbox relay).
type Dispatcher interface {
	// Pass publishes what is pending. busy reports whether it found work;
	// the run drains until a pass finds none.
	Pass(env Env) (busy bool, err error)
}

// Strategy is a built-in (or user-registered) adapter.
type Strategy struct {
	// Name is the strategy's identifier on the command line.
	Name string
	// Summary is a one-line description of its mechanism.
	Summary string
	// NewHandler builds a fresh handler, as a process start does.
	NewHandler func() Handler
	// NewDispatcher builds a fresh dispatcher; nil when the strategy has
	// none.
	NewDispatcher func() Dispatcher
	// SQLSchema is the DDL of the adapter's own tables, for handlers that
	// write SQL (see SQLEnv): the pg backend runs it in the run's schema
	// and empties the tables between runs.
	SQLSchema string
	// Points names the adapter's own crash points (see Env.Point), so that
	// plans place crashes there too.
	Points []faults.Point
	// Supports, when set, reports whether the strategy makes sense with a
	// model; a non-nil error (see Unsupported) says why not.
	Supports func(m model.Model) error
}

// Check returns nil when the strategy makes sense with model m, or an
// error that says why not.
func (s Strategy) Check(m model.Model) error {
	if s.Supports == nil {
		return nil
	}
	return s.Supports(m)
}

// UnsupportedError says why a strategy does not make sense with a model.
type UnsupportedError struct{ Reason string }

func (e *UnsupportedError) Error() string { return e.Reason }

// Unsupported returns an *UnsupportedError with the given reason.
func Unsupported(reason string) error { return &UnsupportedError{Reason: reason} }

var strategies = map[string]Strategy{}

// Register makes a strategy available by name.
func Register(s Strategy) { strategies[s.Name] = s }

// Lookup returns the strategy registered under name.
func Lookup(name string) (Strategy, error) {
	s, ok := strategies[name]
	if !ok {
		return Strategy{}, fmt.Errorf("unknown strategy %q (known: %v)", name, Names())
	}
	return s, nil
}

// Names returns the registered strategy names, sorted.
func Names() []string {
	out := make([]string, 0, len(strategies))
	for n := range strategies {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
