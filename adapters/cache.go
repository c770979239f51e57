package adapters

import (
	"errors"
	"time"
)

// Cache is a key-value store beside the database, with Redis's semantics:
// what a team reaches for when it deduplicates with SET NX. Each command is
// atomic on its own and visible to every process at once; nothing of it
// belongs to a transaction (a rollback does not undo it), it survives a
// consumer's crash and restart, and it is emptied between runs. A key
// given a time to live expires in the run's time (Env.Now): it is absent
// once that much time has passed since the command that set it.
//
// The harness owns every command, as it owns a transaction's boundaries:
// the process may crash just before and just after each one (the points
// faults.BeforeCache and faults.AfterCache), and each is recorded in the
// history. A ttl of 0 means no expiry.
type Cache interface {
	// SetNX sets key to value if it is absent, with an expiry after ttl
	// (SET key value NX PX ttl): set is false when the key was present.
	SetNX(key, value string, ttl time.Duration) (set bool, err error)
	// Set sets key to value, replacing it and its expiry (SET key value
	// PX ttl).
	Set(key, value string, ttl time.Duration) error
	// Get reads a key; ok is false when it is absent or expired.
	Get(key string) (value string, ok bool, err error)
	// Del deletes a key; deleted is false when it was absent.
	Del(key string) (deleted bool, err error)
	// Incr adds one to the integer at key (0 when absent) and returns the
	// result, keeping the key's expiry; ErrNotInteger when the value is
	// not an integer.
	Incr(key string) (int64, error)
	// Expire sets a key's expiry to ttl from now (0: no expiry, as
	// PERSIST); ok is false when the key is absent.
	Expire(key string, ttl time.Duration) (ok bool, err error)
}

// ErrNotInteger is returned by Cache.Incr when the key holds a value that
// is not a 64-bit integer (Redis: "ERR value is not an integer or out of
// range").
var ErrNotInteger = errors.New("value is not an integer or out of range")

// CacheStore is a cache backend's store for one run at a time. At gives
// the commands as of a time: the harness passes the run's time, so that
// expiry follows the simulation's clock, not the wall clock. A store fails
// with ErrBackend when its server fails.
type CacheStore interface {
	// At returns the cache as seen at time now: keys whose expiry is not
	// after now are absent.
	At(now time.Time) Cache
	// Reset empties the store for the next run.
	Reset() error
	// Close releases the store (and deletes what it holds).
	Close() error
}

// CacheBackend is a kind of CacheStore: in memory (package memcache, the
// default) or a real Redis (package rediscache). A history names it.
type CacheBackend interface {
	// Name names the backend in histories ("mem", "redis").
	Name() string
	// Open returns an empty store.
	Open() (CacheStore, error)
}
