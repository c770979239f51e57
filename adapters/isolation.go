package adapters

import "fmt"

// Isolation is a transaction isolation level, with PostgreSQL's semantics
// on every backend (docs/design.md, "Isolation").
type Isolation string

// The isolation levels. The zero value asks for the store's default, which
// is ReadCommitted unless StoreOptions.Isolation says otherwise.
const (
	// ReadCommitted: each statement sees what was committed when it began;
	// a write that meets a row lock waits for its holder and then applies
	// to the newest version of the row. PostgreSQL's and pgx's default,
	// and oncecheck's.
	ReadCommitted Isolation = "read-committed"
	// RepeatableRead: the transaction sees one snapshot, taken at its
	// first statement; writing a row another transaction changed since
	// then is a serialization failure (ErrConflict), after waiting for
	// the other to commit.
	RepeatableRead Isolation = "repeatable-read"
	// Serializable: repeatable read, plus serializable snapshot isolation:
	// a transaction that would make the committed outcome differ from
	// every serial order fails with a serialization failure (ErrConflict).
	Serializable Isolation = "serializable"
)

// Isolations lists the levels, weakest first.
func Isolations() []Isolation { return []Isolation{ReadCommitted, RepeatableRead, Serializable} }

// ParseIsolation reads a level by its name; "" is the default
// (ReadCommitted). PostgreSQL's spellings ("read committed", "REPEATABLE
// READ") are accepted too.
func ParseIsolation(s string) (Isolation, error) {
	switch s {
	case "", "read-committed", "read committed", "READ COMMITTED", "rc":
		return ReadCommitted, nil
	case "repeatable-read", "repeatable read", "REPEATABLE READ", "rr":
		return RepeatableRead, nil
	case "serializable", "SERIALIZABLE", "ssi":
		return Serializable, nil
	}
	return "", fmt.Errorf("unknown isolation level %q (want read-committed, repeatable-read or serializable)", s)
}

// Or returns l, or def when l is the zero value.
func (l Isolation) Or(def Isolation) Isolation {
	if l == "" {
		return def
	}
	return l
}

// TxOptions are what a handler asks of a transaction it opens (see
// Env.BeginTx), as pgx.TxOptions are for a service that writes SQL.
type TxOptions struct {
	// Isolation is the level; zero is the store's default.
	Isolation Isolation
	// ReadOnly makes writes fail, as PostgreSQL's READ ONLY does.
	ReadOnly bool
	// Deferrable, with Serializable and ReadOnly, is PostgreSQL's
	// DEFERRABLE: on the pg backend the transaction waits for a snapshot
	// that cannot fail; the in-memory store treats it as serializable read
	// only.
	Deferrable bool
}

// LockScheduler is how the harness's scheduler lets a store's transaction
// wait for a row lock another transaction holds: the store calls Block on
// the waiting task's goroutine, which parks it until the store calls
// Unblock (the holder ended, or the waiter was chosen as a deadlock
// victim). Only one task runs at a time, so the store's calls need no
// further synchronisation.
type LockScheduler interface {
	// Block parks the caller, whose transaction waiter waits for holder's
	// lock on what ("table/key", or a SQL statement), until Unblock(waiter).
	Block(waiter, holder StoreTx, what string)
	// Unblock makes waiter's task runnable again.
	Unblock(waiter StoreTx, why string)
}

// LockWaiter is a Store whose transactions can wait for each other's locks
// under the harness's scheduler (see LockScheduler). The harness sets the
// scheduler before a scheduled run and clears it (nil) for a free-running
// one, where a wait blocks the goroutine as it would a real process.
type LockWaiter interface {
	SetLockScheduler(s LockScheduler)
}
