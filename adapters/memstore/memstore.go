// Package memstore is the embedded in-memory transactional store: tables of
// keys and values with atomic commits and optimistic concurrency control.
//
// A transaction records the version of every key it reads and buffers its
// writes. Commit checks that no key it read or wrote has changed since (first
// committer wins, like PostgreSQL's serializable snapshot for these access
// patterns) and applies the writes at once; otherwise it fails with
// adapters.ErrConflict. A transaction that is never committed leaves no trace:
// that is what a crash does to uncommitted work.
package memstore

import (
	"errors"
	"sort"
	"sync"

	"github.com/oncecheck/oncecheck/adapters"
)

// ErrDone is returned by operations on a committed or rolled-back
// transaction.
var ErrDone = errors.New("transaction already finished")

type entry struct {
	value   []byte
	version uint64
}

// Store is an in-memory transactional store. The zero value is not usable;
// call New.
type Store struct {
	mu      sync.Mutex
	tables  map[string]map[string]entry
	version uint64 // bumped by every committed write
}

// New returns an empty store.
func New() *Store { return &Store{tables: map[string]map[string]entry{}} }

// Begin opens a transaction.
func (s *Store) Begin() *Tx {
	return &Tx{store: s, reads: map[tableKey]uint64{}, writes: map[tableKey]*write{}}
}

type tableKey struct{ table, key string }

type write struct {
	value   []byte
	deleted bool
}

// Tx is a transaction on a Store. It is not safe for concurrent use.
type Tx struct {
	store  *Store
	reads  map[tableKey]uint64 // version seen (0 = absent)
	writes map[tableKey]*write
	order  []tableKey // writes in first-write order
	done   bool
}

var _ adapters.Tx = (*Tx)(nil)

func (t *Tx) committed(k tableKey) (entry, bool) {
	t.store.mu.Lock()
	defer t.store.mu.Unlock()
	e, ok := t.store.tables[k.table][k.key]
	return e, ok
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
	e, ok := t.committed(k)
	if _, seen := t.reads[k]; !seen {
		t.reads[k] = e.version
	}
	if !ok {
		return nil, false, nil
	}
	return clone(e.value), true, nil
}

func (t *Tx) set(k tableKey, w *write) {
	if _, ok := t.writes[k]; !ok {
		t.order = append(t.order, k)
	}
	if _, seen := t.reads[k]; !seen {
		e, _ := t.committed(k)
		t.reads[k] = e.version
	}
	t.writes[k] = w
}

// Put implements adapters.Tx.
func (t *Tx) Put(table, key string, value []byte) error {
	if t.done {
		return ErrDone
	}
	t.set(tableKey{table, key}, &write{value: clone(value)})
	return nil
}

// Insert implements adapters.Tx.
func (t *Tx) Insert(table, key string, value []byte) error {
	_, ok, err := t.Get(table, key)
	if err != nil {
		return err
	}
	if ok {
		return adapters.ErrExists
	}
	return t.Put(table, key, value)
}

// Delete implements adapters.Tx.
func (t *Tx) Delete(table, key string) error {
	if t.done {
		return ErrDone
	}
	t.set(tableKey{table, key}, &write{deleted: true})
	return nil
}

// Scan implements adapters.Tx. Every scanned key counts as read; rows
// inserted by others are not detected (no predicate locks).
func (t *Tx) Scan(table string) ([]adapters.Row, error) {
	if t.done {
		return nil, ErrDone
	}
	t.store.mu.Lock()
	keys := make([]string, 0, len(t.store.tables[table]))
	for k := range t.store.tables[table] {
		keys = append(keys, k)
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

// Writes returns the keys written so far, as "table/key", in order.
func (t *Tx) Writes() []string {
	out := make([]string, len(t.order))
	for i, k := range t.order {
		out[i] = k.table + "/" + k.key
	}
	return out
}

// Commit implements adapters.Tx.
func (t *Tx) Commit() error {
	if t.done {
		return ErrDone
	}
	t.done = true
	s := t.store
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range t.reads {
		if s.tables[k.table][k.key].version != v {
			return adapters.ErrConflict
		}
	}
	if len(t.order) == 0 {
		return nil
	}
	s.version++
	for _, k := range t.order {
		w := t.writes[k]
		tbl := s.tables[k.table]
		if tbl == nil {
			tbl = map[string]entry{}
			s.tables[k.table] = tbl
		}
		if w.deleted {
			delete(tbl, k.key)
		} else {
			tbl[k.key] = entry{value: w.value, version: s.version}
		}
	}
	return nil
}

// Rollback implements adapters.Tx.
func (t *Tx) Rollback() error {
	t.done = true
	return nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
