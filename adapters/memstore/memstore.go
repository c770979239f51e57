// Package memstore is the embedded in-memory transactional store: tables of
// keys and values with atomic commits and PostgreSQL's isolation levels, so
// that a plan gives the same verdict here as on the pg backend
// (docs/design.md, "Isolation"; adapters/storetest holds both to it).
//
//   - Read committed (the default): each statement reads what was committed
//     when it began, plus the transaction's own writes. A write (put,
//     insert, delete, or a read for update of a row that exists) takes the
//     row's lock; if another open transaction holds it, the writer waits
//     until that one ends, and then writes on the newest version of the row
//     (an insert then finds the row the other committed: ErrExists). A read
//     without a lock followed by a write is the lost update.
//   - Repeatable read: the transaction reads one snapshot, taken at its
//     first statement. A write waits for the lock as above; if the row was
//     committed by another transaction after the snapshot, the write fails
//     with adapters.ErrConflict (PostgreSQL: "could not serialize access
//     due to concurrent update"): first updater wins.
//   - Serializable: repeatable read, plus serializable snapshot isolation
//     among serializable transactions: reads and writes are remembered, and
//     a commit that would complete a dangerous structure (T_in reads what
//     the pivot writes, the pivot reads what T_out writes, T_out committed
//     first) fails with adapters.ErrConflict.
//
// Lock waits: under the harness's scheduler (SetLockScheduler) the waiting
// task parks and others run; otherwise the goroutine blocks, up to the
// lock timeout if one is set (adapters.StoreOptions.LockWait). A wait that
// closes a cycle is a deadlock: the transaction of the cycle that began
// waiting first fails with adapters.ErrConflict, as on PostgreSQL.
//
// Commit applies every write at once; a transaction that is never committed
// leaves no trace: that is what a crash does to uncommitted work.
package memstore

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/internal/waitsfor"
)

// ErrDone is returned by operations on a committed or rolled-back
// transaction.
var ErrDone = errors.New("transaction already finished")

// ErrReadOnly is returned by a write in a read-only transaction.
var ErrReadOnly = errors.New("cannot write in a read-only transaction")

type tableKey struct{ table, key string }

func (k tableKey) String() string { return k.table + "/" + k.key }

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
	level   adapters.Isolation     // the default level

	waits   waitsfor.Graph[*Tx]
	waiting map[*Tx]tableKey // the lock each waiter waits for
	sched   adapters.LockScheduler
	// lockWait bounds a wait of a goroutine that blocks (0: no bound);
	// released is closed, and replaced, when a transaction releases its
	// locks.
	lockWait time.Duration
	released chan struct{}
	// lockConflicts: as histories before format 1.3 ran (see
	// adapters.StoreOptions.LockConflicts).
	lockConflicts bool

	serial []*Tx  // serializable transactions of the run, for SSI
	ends   uint64 // commits of serializable transactions, read-only ones too
	ops    uint64 // lookups and row creations of serializable transactions, in order
}

// New returns an empty store whose transactions run at read committed
// unless they ask for another level.
func New() *Store {
	s := &Store{level: adapters.ReadCommitted}
	s.clear()
	return s
}

func (s *Store) clear() {
	s.keys, s.locks, s.commits = map[tableKey][]version{}, map[tableKey]*Tx{}, 0
	s.waits.Reset()
	s.waiting = map[*Tx]tableKey{}
	s.serial, s.ends, s.ops = nil, 0, 0
}

// SetIsolation sets the level of transactions that ask for none.
func (s *Store) SetIsolation(l adapters.Isolation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.level = l.Or(adapters.ReadCommitted)
}

// WaitForLocks bounds how long a blocked goroutine waits for a lock (a lock
// timeout); 0, the default, waits until the holder ends.
func (s *Store) WaitForLocks(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lockWait = d
}

// SetLockScheduler implements adapters.LockWaiter.
func (s *Store) SetLockScheduler(l adapters.LockScheduler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sched = l
}

// Begin opens a transaction at the store's level.
func (s *Store) Begin() *Tx { return s.BeginTx(adapters.TxOptions{}) }

// BeginTx opens a transaction with the given options.
func (s *Store) BeginTx(o adapters.TxOptions) *Tx {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &Tx{store: s, level: o.Isolation.Or(s.level), readOnly: o.ReadOnly || o.Deferrable, writes: map[tableKey]*write{}}
	if t.level == adapters.Serializable {
		t.reads, t.scans = map[tableKey]bool{}, map[string]bool{}
		t.lookups, t.created = map[string]uint64{}, map[tableKey]uint64{}
		s.serial = append(s.serial, t)
	}
	if s.lockConflicts {
		t.statement() // the snapshot is taken at begin
	}
	return t
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
	s.level = o.Isolation.Or(adapters.ReadCommitted)
	if o.LockConflicts {
		s.level, s.lockConflicts = adapters.RepeatableRead, true
	}
	return kv{s}, nil
}

// kv is a Store as an adapters.Store.
type kv struct{ *Store }

func (b kv) Begin(o adapters.TxOptions) (adapters.StoreTx, error) { return b.Store.BeginTx(o), nil }

func (b kv) Reset() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.clear()
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
	level    adapters.Isolation
	readOnly bool
	snapshot uint64 // the snapshot of repeatable read and serializable
	began    bool   // the snapshot is taken (at the first statement)
	writes   map[tableKey]*write
	order    []tableKey // writes in first-write order
	locked   []tableKey // keys whose lock it holds
	done     bool
	victim   bool // chosen as a deadlock victim while it waited

	// Serializable only: what it read (keys, the tables whose keys it
	// looked up, tables it scanned) and the keys it created; the commit
	// number of its writes and its place among the commits (0: not
	// committed); that it aborted.
	reads   map[tableKey]bool
	lookups map[string]uint64 // table -> when it first looked a key up there
	scans   map[string]bool
	created map[tableKey]uint64 // key -> when it created the row
	commit  uint64
	end     uint64
	aborted bool
}

var (
	_ adapters.StoreTx    = (*Tx)(nil)
	_ adapters.Store      = kv{}
	_ adapters.Backend    = Backend{}
	_ adapters.LockWaiter = (*Store)(nil)
)

// statement returns the snapshot a statement reads; the caller holds the
// store's mutex.
func (t *Tx) statement() uint64 {
	if t.level == adapters.ReadCommitted {
		return t.store.commits
	}
	if !t.began {
		t.began, t.snapshot = true, t.store.commits
	}
	return t.snapshot
}

// visible returns the value of k as of commit snap; the caller holds the
// store's mutex.
func (s *Store) visible(k tableKey, snap uint64) ([]byte, bool) {
	vs := s.keys[k]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].commit <= snap {
			if vs[i].deleted {
				return nil, false
			}
			return vs[i].value, true
		}
	}
	return nil, false
}

// newest returns the commit number of k's newest version (0: none).
func (s *Store) newest(k tableKey) uint64 {
	if vs := s.keys[k]; len(vs) > 0 {
		return vs[len(vs)-1].commit
	}
	return 0
}

// get reads k in the statement's snapshot (or the transaction's own
// write); the caller holds the store's mutex.
func (t *Tx) get(k tableKey) ([]byte, bool) {
	if w, ok := t.writes[k]; ok {
		if w.deleted {
			return nil, false
		}
		return clone(w.value), true
	}
	if t.reads != nil {
		t.reads[k] = true
		if _, ok := t.lookups[k.table]; !ok {
			t.store.ops++
			t.lookups[k.table] = t.store.ops
		}
	}
	v, ok := t.store.visible(k, t.statement())
	return clone(v), ok
}

// Get implements adapters.Tx.
func (t *Tx) Get(table, key string) ([]byte, bool, error) {
	if t.done {
		return nil, false, ErrDone
	}
	t.store.mu.Lock()
	defer t.store.mu.Unlock()
	v, ok := t.get(tableKey{table, key})
	return v, ok, nil
}

// GetForUpdate implements adapters.Tx: the key's write lock, then a read
// of the newest version (read committed) or of the snapshot.
func (t *Tx) GetForUpdate(table, key string) ([]byte, bool, error) {
	if t.done {
		return nil, false, ErrDone
	}
	if t.readOnly {
		return nil, false, ErrReadOnly
	}
	k := tableKey{table, key}
	s := t.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, own := t.writes[k]; !own {
		if _, ok := t.get(k); !ok {
			// As PostgreSQL's SELECT ... FOR UPDATE: no row in the
			// snapshot, nothing to lock.
			return nil, false, nil
		}
	}
	if err := t.lock(k); err != nil {
		return nil, false, err
	}
	v, ok := t.get(k)
	return v, ok, nil
}

// lock takes the write lock of k, waiting for its holder to end, or says
// why it cannot; the caller holds the store's mutex (released while it
// waits).
func (t *Tx) lock(k tableKey) error {
	s := t.store
	var deadline <-chan time.Time
	defer func() {
		s.waits.Done(t)
		delete(s.waiting, t)
	}()
	for {
		holder := s.locks[k]
		if !t.victim && (holder == nil || holder == t) {
			break
		}
		if !t.victim && s.lockConflicts {
			return fmt.Errorf("%w: %s is locked by another open transaction", adapters.ErrConflict, k)
		}
		if !t.victim {
			if victim, dead := s.waits.Wait(t, holder); dead {
				victim.victim = true
				if victim != t {
					delete(s.waiting, victim)
					s.wake(victim, "deadlock victim")
				}
			}
		}
		if t.victim {
			t.victim = false
			return fmt.Errorf("%w: deadlock detected while waiting for %s; this transaction was chosen to fail", adapters.ErrConflict, k)
		}
		s.waiting[t] = k
		if s.sched != nil {
			s.mu.Unlock()
			s.sched.Block(t, holder, k.String())
			s.mu.Lock()
			continue
		}
		if s.lockWait > 0 && deadline == nil {
			timer := time.NewTimer(s.lockWait)
			defer timer.Stop()
			deadline = timer.C
		}
		if s.released == nil {
			s.released = make(chan struct{})
		}
		released := s.released
		s.mu.Unlock()
		select {
		case <-released:
			s.mu.Lock()
		case <-deadline:
			s.mu.Lock()
			return fmt.Errorf("%w: %s stayed locked by another open transaction for %s (lock timeout)", adapters.ErrConflict, k, s.lockWait)
		}
	}
	if t.level != adapters.ReadCommitted && s.newest(k) > t.statement() {
		if s.lockConflicts {
			return fmt.Errorf("%w: %s changed since the transaction began", adapters.ErrConflict, k) // as format 1.2 recorded it
		}
		return fmt.Errorf("%w: could not serialize access due to concurrent update of %s", adapters.ErrConflict, k)
	}
	if s.locks[k] != t {
		s.locks[k] = t
		t.locked = append(t.locked, k)
	}
	return nil
}

// wake makes a waiter run again; the caller holds the store's mutex.
func (s *Store) wake(w *Tx, why string) {
	if s.sched != nil {
		s.sched.Unblock(w, why)
		return
	}
	s.wakeBlocked()
}

// set writes k; the caller holds the store's mutex.
func (t *Tx) set(k tableKey, w *write) error {
	if t.readOnly {
		return ErrReadOnly
	}
	if err := t.lock(k); err != nil {
		return err
	}
	t.noteCreated(k)
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
	t.store.mu.Lock()
	defer t.store.mu.Unlock()
	return t.set(tableKey{table, key}, &write{value: clone(value)})
}

// Insert implements adapters.Tx: a unique insert (INSERT ... ON CONFLICT
// DO NOTHING). A row another open transaction is inserting makes it wait
// for that one; if it commits, the row exists.
func (t *Tx) Insert(table, key string, value []byte) error {
	if t.done {
		return ErrDone
	}
	k := tableKey{table, key}
	s := t.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := t.get(k); ok {
		return adapters.ErrExists
	}
	if t.readOnly {
		return ErrReadOnly
	}
	held := s.locks[k] == t
	if err := t.lock(k); err != nil {
		return err
	}
	if _, ok := t.get(k); ok {
		// Read committed: the holder it waited for inserted the row.
		if !held {
			t.unlock(k)
		}
		return adapters.ErrExists
	}
	t.noteCreated(k)
	if _, ok := t.writes[k]; !ok {
		t.order = append(t.order, k)
	}
	t.writes[k] = &write{value: clone(value)}
	return nil
}

// noteCreated remembers, for serializable snapshot isolation, that a write
// of k creates a row (none is committed), and when: on PostgreSQL that is
// a new index entry, which conflicts with every earlier lookup of the index
// page it lands on, not only with lookups of k. The caller holds the
// store's mutex.
func (t *Tx) noteCreated(k tableKey) {
	if t.created == nil {
		return
	}
	if _, exists := t.store.visible(k, t.store.commits); !exists {
		if _, ok := t.created[k]; !ok {
			t.store.ops++
			t.created[k] = t.store.ops
		}
	}
}

// unlock gives back a lock taken for a statement that wrote nothing.
func (t *Tx) unlock(k tableKey) {
	delete(t.store.locks, k)
	for i, l := range t.locked {
		if l == k {
			t.locked = append(t.locked[:i], t.locked[i+1:]...)
			break
		}
	}
	t.store.grant(k)
	t.store.wakeBlocked()
}

// wakeBlocked wakes the goroutines blocked on locks (no scheduler: a
// free-running run) to look again; the caller holds the store's mutex.
func (s *Store) wakeBlocked() {
	if s.sched == nil && s.released != nil {
		close(s.released)
		s.released = nil
	}
}

// Delete implements adapters.Tx.
func (t *Tx) Delete(table, key string) error {
	if t.done {
		return ErrDone
	}
	t.store.mu.Lock()
	defer t.store.mu.Unlock()
	return t.set(tableKey{table, key}, &write{deleted: true})
}

// scan returns the keys of table in the statement's snapshot and the
// transaction's own writes, sorted; the caller holds the store's mutex.
func (t *Tx) scan(table string) []adapters.Row {
	if t.scans != nil {
		t.scans[table] = true
	}
	snap := t.statement()
	var keys []string
	for k := range t.store.keys {
		if k.table == table {
			keys = append(keys, k.key)
		}
	}
	for k := range t.writes {
		if k.table == table {
			keys = append(keys, k.key)
		}
	}
	sort.Strings(keys)
	var rows []adapters.Row
	for i, key := range keys {
		if i > 0 && keys[i-1] == key {
			continue
		}
		k := tableKey{table, key}
		var v []byte
		var ok bool
		if w, own := t.writes[k]; own {
			v, ok = w.value, !w.deleted
		} else {
			v, ok = t.store.visible(k, snap)
		}
		if ok {
			rows = append(rows, adapters.Row{Key: key, Value: clone(v)})
		}
	}
	return rows
}

// Scan implements adapters.Tx: the statement's snapshot of the table and
// the transaction's own writes, sorted by key.
func (t *Tx) Scan(table string) ([]adapters.Row, error) {
	if t.done {
		return nil, ErrDone
	}
	t.store.mu.Lock()
	defer t.store.mu.Unlock()
	return t.scan(table), nil
}

// Claim implements adapters.Tx: the rows of Scan whose lock no other open
// transaction holds, each locked for t (SELECT ... FOR UPDATE SKIP
// LOCKED).
func (t *Tx) Claim(table string) ([]adapters.Row, error) {
	if t.done {
		return nil, ErrDone
	}
	if t.readOnly {
		return nil, ErrReadOnly
	}
	s := t.store
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := t.scan(table)
	claimed := rows[:0]
	for _, row := range rows {
		k := tableKey{table, row.Key}
		if holder := s.locks[k]; holder != nil && holder != t {
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
		out[i] = k.String()
	}
	return out
}

// release drops the transaction's locks, each to its first waiter; the
// caller holds the store's mutex.
func (t *Tx) release() {
	s := t.store
	for _, k := range t.locked {
		if s.locks[k] == t {
			delete(s.locks, k)
			s.grant(k)
		}
	}
	t.locked = nil
	s.wakeBlocked()
}

// grant hands k's free lock to the transaction that began waiting for it
// first, as PostgreSQL's lock queue does; the others now wait for that
// one. The caller holds the store's mutex.
func (s *Store) grant(k tableKey) {
	if s.sched == nil {
		return // blocked goroutines race for it, as processes do
	}
	var first *Tx
	for _, w := range s.waits.All() {
		if s.waiting[w] != k {
			continue
		}
		if first == nil {
			first = w
			s.waits.Done(w)
			delete(s.waiting, w)
			s.locks[k] = w
			w.locked = append(w.locked, k)
			s.wake(w, "lock on "+k.String()+" released")
			continue
		}
		if victim, dead := s.waits.Wait(w, first); dead {
			delete(s.waiting, victim)
			victim.victim = true
			s.wake(victim, "deadlock victim")
		}
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
	if t.level == adapters.Serializable {
		if err := t.serializable(); err != nil {
			t.aborted = true
			return err
		}
	}
	s.ends++
	t.end = s.ends
	if len(t.order) == 0 {
		return nil
	}
	s.commits++
	t.commit = s.commits
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
	t.aborted = true
	t.store.waits.Done(t)
	delete(t.store.waiting, t)
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

// serializable is serializable snapshot isolation's check at t's commit
// (Cahill, Röhm and Fekete; as PostgreSQL refines it): t may not complete
// a dangerous structure T_in -rw-> T_pivot -rw-> T_out, in which T_out
// committed first (and, when T_in is read only, before T_in's snapshot).
// At a commit, t is the pivot or T_in; T_out committed already. The caller
// holds the store's mutex.
func (t *Tx) serializable() error {
	s := t.store
	committed := func(x *Tx) bool { return x.end != 0 && !x.aborted }
	// outFirst reports whether out committed before in and pivot (those
	// that committed) and, for a read-only in, before in's snapshot.
	outFirst := func(in, pivot, out *Tx) bool {
		if !committed(out) || (committed(pivot) && pivot.end < out.end) || (committed(in) && in.end < out.end) {
			return false
		}
		return !in.readOnly || out.commit <= in.snapshot
	}
	for _, x := range s.serial {
		// t as the pivot: x -rw-> t -rw-> out.
		if s.rw(x, t) {
			for _, out := range s.serial {
				if s.rw(t, out) && outFirst(x, t, out) { // out may be x: write skew
					return fmt.Errorf("%w: could not serialize access due to read/write dependencies among transactions (%s)", adapters.ErrConflict, "as the pivot")
				}
			}
		}
		// t as T_in: t -rw-> x -rw-> out.
		if s.rw(t, x) {
			for _, out := range s.serial {
				if out != t && out != x && s.rw(x, out) && outFirst(t, x, out) {
					return fmt.Errorf("%w: could not serialize access due to read/write dependencies among transactions (%s)", adapters.ErrConflict, "reading what another changes")
				}
			}
		}
	}
	return nil
}

// rw reports a read-write antidependency r -rw-> w between two serializable
// transactions: r read a key (or scanned a table) that w writes, without
// seeing w's write (w had not committed before r's snapshot). As on
// PostgreSQL, whose predicate locks on an index lookup cover the index
// page, and a small table's index is one page, a row w creates conflicts
// with any lookup r made in its table before (a lookup after it examines
// other keys' entries only: no conflict). The caller holds the store's
// mutex.
func (s *Store) rw(r, w *Tx) bool {
	if r == w || r.aborted || w.aborted || !r.began || len(w.order) == 0 {
		return false
	}
	if w.commit != 0 && w.commit <= r.snapshot {
		return false // r saw w's writes
	}
	for _, k := range w.order {
		if r.reads[k] || r.scans[k.table] {
			return true
		}
		if at, ok := w.created[k]; ok {
			if looked, ok := r.lookups[k.table]; ok && looked < at {
				return true
			}
		}
	}
	return false
}
