// Package memstore is the embedded in-memory transactional store: tables of
// keys and values with atomic commits, snapshot isolation and
// first-updater-wins, the semantics of PostgreSQL's REPEATABLE READ that
// the pg backend uses too, so that a plan gives the same verdict on both.
//
//   - A transaction reads the committed state as of its start (its
//     snapshot), plus its own writes.
//   - Writing a key (put, insert, delete, or reading it for update when the
//     snapshot has a row for it) takes the key's lock. If another open
//     transaction holds it, the write fails at once with
//     adapters.ErrConflict (PostgreSQL waits, then fails on its lock
//     timeout; Store.WaitForLocks makes it wait too). If the key was
//     committed by another transaction after the snapshot, the write fails with adapters.ErrConflict too (PostgreSQL:
//     "could not serialize access due to concurrent update").
//   - Commit applies every write at once; a transaction that is never
//     committed leaves no trace: that is what a crash does to uncommitted
//     work.
//
// Lost updates are thus impossible, and the loser of a race nacks and
// retries, as a real consumer does.
package memstore

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
)

// ErrDone is returned by operations on a committed or rolled-back
// transaction.
var ErrDone = errors.New("transaction already finished")

type tableKey struct{ table, key string }

// version is one committed value of a key; deleted marks a deletion.
type version struct {
	commit  uint64
	value   []byte
	deleted bool
}

// Store is an in-memory transactional store. The zero value is not usable;
// call New.
type Store struct {
	mu      sync.Mutex
	keys    map[tableKey][]version // committed versions, oldest first
	locks   map[tableKey]*Tx       // write locks of open transactions
	commits uint64                 // number of the last commit
	// lockWait is how long a write waits for a lock another transaction
	// holds (0: it fails at once); released is closed, and replaced, when
	// a transaction releases its locks.
	lockWait time.Duration
	released chan struct{}
}

// WaitForLocks makes a write that finds its key locked wait, up to d, for
// the lock's holder to end, as PostgreSQL waits up to its lock timeout,
// instead of failing at once. Only for processes that truly run in
// parallel (a free-running run): under the deterministic scheduler the
// holder is parked and the wait would only delay the conflict.
func (s *Store) WaitForLocks(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lockWait = d
}

// New returns an empty store.
func New() *Store {
	return &Store{keys: map[tableKey][]version{}, locks: map[tableKey]*Tx{}}
}

// Begin opens a transaction.
func (s *Store) Begin() *Tx {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &Tx{store: s, snapshot: s.commits, writes: map[tableKey]*write{}}
}

// Backend is the in-memory backend: every store it opens is a fresh Store.
type Backend struct{}

// Name implements adapters.Backend.
func (Backend) Name() string { return "mem" }

// Open implements adapters.Backend. A handler that writes SQL (o.DDL) has
// no place here: the error is an *adapters.UnsupportedError.
func (Backend) Open(o adapters.StoreOptions) (adapters.Store, error) {
	if o.DDL != "" {
		return nil, adapters.Unsupported("the strategy writes SQL, which the in-memory backend has not: run it on the pg backend")
	}
	s := New()
	s.lockWait = o.LockWait
	return kv{s}, nil
}

// kv is a Store as an adapters.Store.
type kv struct{ *Store }

func (b kv) Begin() (adapters.StoreTx, error) { return b.Store.Begin(), nil }

func (b kv) Reset() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.keys, b.locks, b.commits = map[tableKey][]version{}, map[tableKey]*Tx{}, 0
	return nil
}

func (b kv) Close() error { return nil }

type write struct {
	value   []byte
	deleted bool
}

// Tx is a transaction on a Store. It is not safe for concurrent use.
type Tx struct {
	store    *Store
	snapshot uint64
	writes   map[tableKey]*write
	order    []tableKey // writes in first-write order
	locked   []tableKey // keys whose lock it holds
	done     bool
}

var (
	_ adapters.StoreTx = (*Tx)(nil)
	_ adapters.Store   = kv{}
	_ adapters.Backend = Backend{}
)

// visible returns the value of k in the transaction's snapshot.
func (t *Tx) visible(k tableKey) ([]byte, bool) {
	t.store.mu.Lock()
	defer t.store.mu.Unlock()
	vs := t.store.keys[k]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].commit <= t.snapshot {
			if vs[i].deleted {
				return nil, false
			}
			return vs[i].value, true
		}
	}
	return nil, false
}

// Get implements adapters.Tx.
func (t *Tx) Get(table, key string) ([]byte, bool, error) {
	if t.done {
		return nil, false, ErrDone
	}
	k := tableKey{table, key}
	if w, ok := t.writes[k]; ok {
		if w.deleted {
			return nil, false, nil
		}
		return clone(w.value), true, nil
	}
	v, ok := t.visible(k)
	return clone(v), ok, nil
}

// GetForUpdate implements adapters.Tx: the key's write lock, then a read.
func (t *Tx) GetForUpdate(table, key string) ([]byte, bool, error) {
	if t.done {
		return nil, false, ErrDone
	}
	k := tableKey{table, key}
	if _, own := t.writes[k]; !own {
		if _, ok := t.visible(k); !ok {
			// As PostgreSQL's SELECT ... FOR UPDATE: no row in the
			// snapshot, nothing to lock.
			return nil, false, nil
		}
	}
	if err := t.lock(k); err != nil {
		return nil, false, err
	}
	return t.Get(table, key)
}

// lock takes the write lock of k, or says why it cannot.
func (t *Tx) lock(k tableKey) error {
	s := t.store
	s.mu.Lock()
	defer s.mu.Unlock()
	var deadline *time.Timer
	for {
		holder := s.locks[k]
		if holder == nil || holder == t {
			break
		}
		if s.lockWait == 0 {
			return fmt.Errorf("%w: %s/%s is locked by another open transaction", adapters.ErrConflict, k.table, k.key)
		}
		if deadline == nil {
			deadline = time.NewTimer(s.lockWait)
			defer deadline.Stop()
		}
		if s.released == nil {
			s.released = make(chan struct{})
		}
		released := s.released
		s.mu.Unlock()
		select {
		case <-released:
			s.mu.Lock()
		case <-deadline.C:
			s.mu.Lock()
			return fmt.Errorf("%w: %s/%s stayed locked by another open transaction for %s", adapters.ErrConflict, k.table, k.key, s.lockWait)
		}
	}
	if vs := s.keys[k]; len(vs) > 0 && vs[len(vs)-1].commit > t.snapshot {
		return fmt.Errorf("%w: %s/%s changed since the transaction began", adapters.ErrConflict, k.table, k.key)
	}
	if s.locks[k] != t {
		s.locks[k] = t
		t.locked = append(t.locked, k)
	}
	return nil
}

func (t *Tx) set(k tableKey, w *write) error {
	if err := t.lock(k); err != nil {
		return err
	}
	if _, ok := t.writes[k]; !ok {
		t.order = append(t.order, k)
	}
	t.writes[k] = w
	return nil
}

// Put implements adapters.Tx.
func (t *Tx) Put(table, key string, value []byte) error {
	if t.done {
		return ErrDone
	}
	return t.set(tableKey{table, key}, &write{value: clone(value)})
}

// Insert implements adapters.Tx.
func (t *Tx) Insert(table, key string, value []byte) error {
	if t.done {
		return ErrDone
	}
	if _, ok, _ := t.Get(table, key); ok {
		return adapters.ErrExists
	}
	return t.set(tableKey{table, key}, &write{value: clone(value)})
}

// Delete implements adapters.Tx.
func (t *Tx) Delete(table, key string) error {
	if t.done {
		return ErrDone
	}
	return t.set(tableKey{table, key}, &write{deleted: true})
}

// Scan implements adapters.Tx: the snapshot's rows and the transaction's
// own writes, sorted by key.
func (t *Tx) Scan(table string) ([]adapters.Row, error) {
	if t.done {
		return nil, ErrDone
	}
	t.store.mu.Lock()
	var keys []string
	for k := range t.store.keys {
		if k.table == table {
			keys = append(keys, k.key)
		}
	}
	t.store.mu.Unlock()
	for k, w := range t.writes {
		if k.table == table && !w.deleted {
			keys = append(keys, k.key)
		}
	}
	sort.Strings(keys)
	var rows []adapters.Row
	for i, k := range keys {
		if i > 0 && keys[i-1] == k {
			continue
		}
		v, ok, err := t.Get(table, k)
		if err != nil {
			return nil, err
		}
		if ok {
			rows = append(rows, adapters.Row{Key: k, Value: v})
		}
	}
	return rows, nil
}

// Claim implements adapters.Tx: the rows of Scan whose lock no other open
// transaction holds, each locked for t.
func (t *Tx) Claim(table string) ([]adapters.Row, error) {
	rows, err := t.Scan(table)
	if err != nil {
		return nil, err
	}
	claimed := rows[:0]
	for _, row := range rows {
		k := tableKey{table, row.Key}
		t.store.mu.Lock()
		holder := t.store.locks[k]
		t.store.mu.Unlock()
		if holder != nil && holder != t {
			continue // another transaction has it: skip it
		}
		if err := t.lock(k); err != nil {
			return nil, err // changed since the snapshot
		}
		claimed = append(claimed, row)
	}
	return claimed, nil
}

// Writes returns the keys written so far, as "table/key", in order.
func (t *Tx) Writes() []string {
	out := make([]string, len(t.order))
	for i, k := range t.order {
		out[i] = k.table + "/" + k.key
	}
	return out
}

// release drops the transaction's locks; the caller holds the store's mutex.
func (t *Tx) release() {
	for _, k := range t.locked {
		if t.store.locks[k] == t {
			delete(t.store.locks, k)
		}
	}
	if t.store.released != nil {
		close(t.store.released)
		t.store.released = nil
	}
}

// Commit implements adapters.Tx: every write becomes visible at once.
func (t *Tx) Commit() error {
	if t.done {
		return ErrDone
	}
	t.done = true
	s := t.store
	s.mu.Lock()
	defer s.mu.Unlock()
	defer t.release()
	if len(t.order) == 0 {
		return nil
	}
	s.commits++
	for _, k := range t.order {
		w := t.writes[k]
		s.keys[k] = append(s.keys[k], version{commit: s.commits, value: w.value, deleted: w.deleted})
	}
	return nil
}

// Rollback implements adapters.Tx.
func (t *Tx) Rollback() error {
	if t.done {
		return nil
	}
	t.done = true
	t.store.mu.Lock()
	defer t.store.mu.Unlock()
	t.release()
	return nil
}

// Abort implements adapters.StoreTx: in memory, a crash is a rollback.
func (t *Tx) Abort() error { return t.Rollback() }

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
