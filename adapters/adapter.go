// Package adapters defines the contract between oncecheck and a message
// handler (an adapter): Env, Tx, Handler, Dispatcher and Strategy, and the
// errors they share; and the contract of the stores behind Tx (Store,
// Backend). The built-in strategies are its subpackages; what they share is
// in strategykit; SQL handlers reach PostgreSQL through sqlenv.
//
// An adapter is a handler written the way a real service would write it,
// against the harness's Env: it opens transactions on the backend's store,
// publishes outputs through the broker, and acks or nacks its delivery. The
// harness owns every one of those boundaries, so it can crash the process at
// each of them without the adapter's help; an adapter may name further crash
// points with Env.Point.
//
// What an adapter must not do: keep state that matters in memory (a crash
// loses it, a restart builds a fresh adapter from its factory) or in a
// package-level variable (it survives into the next run), read the wall
// clock or global randomness (ask Env.Now for the time and Env.NewID for
// fresh ids), or start goroutines. State that must survive a restart
// without being part of a transaction belongs in Env.Cache.
package adapters

import (
	"errors"
	"time"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// ErrExists is returned by Tx.Insert when the key is already present (a
// unique-constraint violation).
var ErrExists = errors.New("key already exists")

// ErrConflict is a serialization failure or a deadlock, as PostgreSQL
// reports them (SQLSTATE 40001, 40P01): returned by a write or a locking
// read (Put, Insert, Delete, GetForUpdate, Claim) under repeatable read or
// serializable when another transaction committed the key after this
// one's snapshot, by a wait for a lock that closes a cycle of waits, by a
// lock timeout when one is set, and by Commit of a serializable
// transaction that cannot be serialized. A handler treats it as a real
// consumer does: the delivery is nacked and retried.
var ErrConflict = errors.New("transaction conflict")

// ErrBackend wraps failures of the store itself (a database that cannot be
// reached or fails mid-run), as opposed to the conflicts and unique
// violations a handler deals with. The harness makes such a run
// inconclusive.
var ErrBackend = errors.New("backend failure")

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
	// its write lock as SELECT ... FOR UPDATE does: it waits while another
	// open transaction holds the lock, then reads the newest version (read
	// committed) or fails with ErrConflict if the key changed since this
	// transaction's snapshot (repeatable read, serializable). A key with
	// no row has nothing to lock, as on PostgreSQL.
	GetForUpdate(table, key string) (value []byte, ok bool, err error)
	// Put writes a key, creating or replacing it (INSERT ... ON CONFLICT
	// DO UPDATE); it waits for the key's lock as GetForUpdate does.
	Put(table, key string, value []byte) error
	// Insert writes a key that must not exist yet; otherwise ErrExists.
	// When another open transaction is inserting it, Insert waits for that
	// one to end (ErrExists if it committed).
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
	// Begin opens a transaction on the backend's store, at the run's
	// isolation level (read committed unless the run says otherwise).
	Begin() (Tx, error)
	// BeginTx opens a transaction with options of the handler's own (its
	// isolation level, read only), as a service passes pgx.TxOptions.
	BeginTx(o TxOptions) (Tx, error)
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
	// Now returns the run's time: simulated, so deterministic, and
	// advancing with the run (a millisecond per recorded event, and the
	// delay of a late fault at once). Times to live and windows expire in
	// it; an adapter never reads the wall clock.
	Now() time.Time
	// Cache returns the run's key-value store beside the database (see
	// Cache): it survives the process's crash and is never rolled back.
	Cache() Cache
	// RunID identifies the run, unique in the process: a namespace for
	// what an adapter must keep per run outside the harness. It differs
	// between two runs of one case, so nothing derived from it may reach
	// the store, the cache or a published message.
	RunID() string
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

// Strategy is an adapter as a value: a name and the factories of its
// processes. Each built-in strategy's package exports one as Strategy; a
// catalogue (package catalogue) resolves the names saved in histories.
type Strategy struct {
	// Name identifies the strategy in histories and catalogues.
	Name string
	// Summary is a one-line description of its mechanism.
	Summary string
	// NewHandler builds a fresh handler, as a process start does.
	NewHandler func() Handler
	// NewDispatcher builds a fresh dispatcher; nil when the strategy has
	// none.
	NewDispatcher func() Dispatcher
	// SQLSchema is the DDL of the adapter's own tables, for handlers that
	// write SQL (see package sqlenv): the pg backend runs it in the run's schema
	// and empties the tables between runs.
	SQLSchema string
	// Points names the adapter's own crash points (see Env.Point), so that
	// plans place crashes there too.
	Points []faults.Point
	// Windows are the times to live and windows the adapter relies on (a
	// cache key's TTL, a duplicate window), so that plans place late
	// copies just before and just past each of them.
	Windows []time.Duration
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
