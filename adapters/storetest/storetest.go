// Package storetest is the conformance suite of adapters.Store: the
// semantics every backend must share, so that a plan gives the same
// verdict on every backend. They are PostgreSQL's: atomic commits, unique
// inserts, crashes that leave no trace, row locks that make a writer wait,
// deadlocks with a victim, and the three isolation levels with the
// anomalies each allows (lost update, non-repeatable read, write skew, the
// read-only anomaly) and forbids. Backends run it from their tests; the pg
// backend's run is the check that the in-memory store models PostgreSQL.
package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
)

// Open returns a fresh, empty store with the given options; the store must
// implement adapters.LockWaiter.
type Open func(t *testing.T, o adapters.StoreOptions) adapters.Store

type level = adapters.Isolation

const (
	rc  = adapters.ReadCommitted
	rr  = adapters.RepeatableRead
	ser = adapters.Serializable
)

// Run runs the suite against stores made by open.
func Run(t *testing.T, open Open) {
	// Semantics that do not depend on the isolation level, at the default.
	plain := map[string]func(*testing.T, *suite){
		"commit is atomic and visible":            commitIsAtomic,
		"uncommitted work leaves no trace":        uncommittedLeavesNoTrace,
		"a crash releases what it held":           crashReleases,
		"an insert that finds its key waits not":  insertThatFindsItsKey,
		"scan sees own writes in key order":       scanSeesOwnWrites,
		"reset empties the store":                 resetEmpties,
		"declared tables keep their values":       declaredTablesKeepTheirValues,
		"a crash releases what it claimed":        crashReleasesClaims,
		"a writer waits for a rolled-back holder": writerWaitsForRollback,
		"a deadlock fails its first waiter":       deadlockFailsTheFirstWaiter,
		"a waiter that is not scheduled blocks":   waiterWithoutSchedulerBlocks,
		"a read-only transaction cannot write":    readOnlyCannotWrite,
	}
	for name, test := range plain {
		t.Run(name, func(t *testing.T) { test(t, newSuite(t, open, adapters.StoreOptions{}, "")) })
	}
	// Semantics that do, at each level.
	byLevel := map[string]func(*testing.T, *suite){
		"non-repeatable read":                  nonRepeatableRead,
		"lost update":                          lostUpdate,
		"lost update after a wait":             lostUpdateAfterAWait,
		"get for update waits and re-reads":    getForUpdateWaits,
		"get for update of an absent key":      getForUpdateOfAbsentKey,
		"insert waits for a racing insert":     insertWaitsForARacingInsert,
		"write skew":                           writeSkew,
		"read-only anomaly":                    readOnlyAnomaly,
		"lookups of absent keys, then inserts": lookupsThenInserts,
		"a lookup after another's insert":      lookupAfterInsert,
		"claim skips what another holds":       claimSkipsWhatAnotherHolds,
		"a transaction may ask for its level":  transactionAsksForItsLevel,
	}
	for _, l := range adapters.Isolations() {
		for name, test := range byLevel {
			t.Run(string(l)+"/"+name, func(t *testing.T) {
				test(t, newSuite(t, open, adapters.StoreOptions{Isolation: l}, l))
			})
		}
	}
	t.Run("lock conflicts, as before format 1.3", func(t *testing.T) {
		lockConflicts(t, newSuite(t, open, adapters.StoreOptions{LockConflicts: true}, rr))
	})
}

// suite is a store under test, with a lock scheduler that lets a
// statement wait on a goroutine of its own while the test goes on.
type suite struct {
	t     *testing.T
	s     adapters.Store
	level level
	sched *scheduler
}

func newSuite(t *testing.T, open Open, o adapters.StoreOptions, l level) *suite {
	s := open(t, o)
	lw, ok := s.(adapters.LockWaiter)
	require.True(t, ok, "the store implements adapters.LockWaiter")
	sched := &scheduler{blocked: make(chan string, 16), state: map[adapters.StoreTx]chan struct{}{}}
	lw.SetLockScheduler(sched)
	return &suite{t: t, s: s, level: l, sched: sched}
}

// scheduler is a LockScheduler for tests: Block reports the wait and parks
// until Unblock.
type scheduler struct {
	mu      sync.Mutex
	blocked chan string
	state   map[adapters.StoreTx]chan struct{}
}

func (s *scheduler) gate(tx adapters.StoreTx) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.state[tx]
	if !ok {
		ch = make(chan struct{}, 1)
		s.state[tx] = ch
	}
	return ch
}

func (s *scheduler) Block(waiter, _ adapters.StoreTx, what string) {
	ch := s.gate(waiter)
	s.blocked <- what
	<-ch
}

func (s *scheduler) Unblock(waiter adapters.StoreTx, _ string) {
	select {
	case s.gate(waiter) <- struct{}{}:
	default: // already released
	}
}

// patience bounds how long a test waits for what must happen.
const patience = 20 * time.Second

// pending is a statement running on a goroutine of its own.
type pending struct {
	done chan error
}

// async runs f on a goroutine of its own and returns once it has either
// finished or begun waiting for a lock.
func (x *suite) async(f func() error) *pending {
	p := &pending{done: make(chan error, 1)}
	go func() { p.done <- f() }()
	return p
}

// blocks asserts that p waits for a lock.
func (x *suite) blocks(p *pending, why string) {
	x.t.Helper()
	select {
	case <-x.sched.blocked:
	case err := <-p.done:
		x.t.Fatalf("%s: the statement did not wait for the lock (it returned %v)", why, err)
	case <-time.After(patience):
		x.t.Fatalf("%s: the statement neither waited nor returned", why)
	}
}

// result returns p's outcome.
func (x *suite) result(p *pending) error {
	x.t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(patience):
		x.t.Fatal("the waiting statement never returned")
		return nil
	}
}

func (x *suite) begin() adapters.StoreTx { return x.beginWith(adapters.TxOptions{}) }

func (x *suite) beginWith(o adapters.TxOptions) adapters.StoreTx {
	x.t.Helper()
	tx, err := x.s.Begin(o)
	require.NoError(x.t, err)
	x.t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}

// get reads a key in a transaction of its own.
func (x *suite) get(table, key string) (string, bool) {
	x.t.Helper()
	tx := x.begin()
	defer tx.Rollback()
	v, ok, err := tx.Get(table, key)
	require.NoError(x.t, err)
	return string(v), ok
}

// read reads a key that must be there.
func (x *suite) read(tx adapters.Tx, table, key string) string {
	x.t.Helper()
	v, ok, err := tx.Get(table, key)
	require.NoError(x.t, err)
	require.True(x.t, ok, "%s/%s is there", table, key)
	return string(v)
}

// put commits one write.
func (x *suite) put(table, key, value string) {
	x.t.Helper()
	tx := x.begin()
	require.NoError(x.t, tx.Put(table, key, []byte(value)))
	require.NoError(x.t, tx.Commit())
}

func commitIsAtomic(t *testing.T, x *suite) {
	tx := x.begin()
	require.NoError(t, tx.Put("t", "a", []byte("1")))
	require.NoError(t, tx.Put("t", "b", []byte("2")))
	require.Equal(t, "1", x.read(tx, "t", "a"), "a transaction reads its own writes")
	_, ok := x.get("t", "a")
	require.False(t, ok, "uncommitted writes are invisible")
	require.Equal(t, []string{"t/a", "t/b"}, tx.Writes())
	require.NoError(t, tx.Commit())
	v, _ := x.get("t", "b")
	require.Equal(t, "2", v)
}

func uncommittedLeavesNoTrace(t *testing.T, x *suite) {
	tx := x.begin()
	require.NoError(t, tx.Put("t", "a", []byte("1")))
	require.NoError(t, tx.Rollback())
	_, ok := x.get("t", "a")
	require.False(t, ok)
	require.Error(t, tx.Commit(), "a finished transaction cannot commit")
}

func crashReleases(t *testing.T, x *suite) {
	a := x.begin()
	require.NoError(t, a.Put("t", "k", []byte("1")))
	require.NoError(t, a.Abort())
	b := x.begin()
	require.NoError(t, b.Put("t", "k", []byte("2")), "the crashed transaction's lock is gone")
	require.NoError(t, b.Commit())
	v, _ := x.get("t", "k")
	require.Equal(t, "2", v, "and its write with it")
}

// crashReleasesClaims: rows claimed by a transaction that crashed are
// there for the next claim at once (a dispatcher that crashed mid-pass
// leaves its rows to the next pass, not locked).
func crashReleasesClaims(t *testing.T, x *suite) {
	for round := range 20 {
		x.put("outbox", "r", fmt.Sprint(round))
		a := x.begin()
		rows, err := a.Claim("outbox")
		require.NoError(t, err)
		require.Len(t, rows, 1)
		require.NoError(t, a.Delete("outbox", "r"))
		require.NoError(t, a.Abort())
		b := x.begin()
		rows, err = b.Claim("outbox")
		require.NoError(t, err)
		require.Len(t, rows, 1, "round %d: the crashed claim's row is free", round)
		require.NoError(t, b.Rollback())
	}
}

func insertThatFindsItsKey(t *testing.T, x *suite) {
	seed := x.begin()
	require.NoError(t, seed.Insert("processed", "m1", nil))
	require.NoError(t, seed.Commit())
	a := x.begin()
	require.ErrorIs(t, a.Insert("processed", "m1", nil), adapters.ErrExists)
	b := x.begin()
	require.NoError(t, b.Delete("processed", "m1"), "the insert that found its key holds no lock")
	require.NoError(t, b.Commit())
	require.NoError(t, a.Rollback())
}

func scanSeesOwnWrites(t *testing.T, x *suite) {
	seed := x.begin()
	require.NoError(t, seed.Put("t", "b", []byte("2")))
	require.NoError(t, seed.Put("t", "a", []byte("1")))
	require.NoError(t, seed.Put("other", "z", []byte("9")))
	require.NoError(t, seed.Commit())
	tx := x.begin()
	require.NoError(t, tx.Delete("t", "a"))
	require.NoError(t, tx.Put("t", "c", []byte("3")))
	rows, err := tx.Scan("t")
	require.NoError(t, err)
	require.Equal(t, []adapters.Row{{Key: "b", Value: []byte("2")}, {Key: "c", Value: []byte("3")}}, rows)
}

func resetEmpties(t *testing.T, x *suite) {
	x.put("t", "a", "1")
	require.NoError(t, x.s.Reset())
	_, ok := x.get("t", "a")
	require.False(t, ok)
}

// declaredTablesKeepTheirValues writes, reads and scans a row of every
// declared table, with a value of the column's type.
func declaredTablesKeepTheirValues(t *testing.T, x *suite) {
	for _, spec := range strategykit.Tables() {
		var value []byte
		switch {
		case spec.Value == "":
		case spec.Type == "bigint":
			value = []byte("42")
		default:
			value = []byte(`{"a":[1,"x"]}`)
		}
		tx := x.begin()
		require.NoError(t, tx.Insert(spec.Name, "k2", value), spec.Name)
		require.NoError(t, tx.Put(spec.Name, "k1", value), spec.Name)
		require.ErrorIs(t, tx.Insert(spec.Name, "k1", value), adapters.ErrExists, spec.Name)
		rows, err := tx.Scan(spec.Name)
		require.NoError(t, err)
		require.Equal(t, []adapters.Row{{Key: "k1", Value: value}, {Key: "k2", Value: value}}, rows, spec.Name)
		require.NoError(t, tx.Delete(spec.Name, "k2"), spec.Name)
		require.NoError(t, tx.Commit())
		v, ok := x.get(spec.Name, "k1")
		require.True(t, ok, spec.Name)
		require.Equal(t, string(value), v, spec.Name)
		_, ok = x.get(spec.Name, "k2")
		require.False(t, ok, spec.Name)
	}
}

// writerWaitsForRollback: a write that meets a lock waits for the holder;
// when the holder rolls back, the write goes through.
func writerWaitsForRollback(t *testing.T, x *suite) {
	x.put("t", "k", "0")
	a, b := x.begin(), x.begin()
	require.NoError(t, a.Put("t", "k", []byte("a")))
	w := x.async(func() error { return b.Put("t", "k", []byte("b")) })
	x.blocks(w, "a put of a locked row")
	require.NoError(t, a.Rollback())
	require.NoError(t, x.result(w), "the holder rolled back: the waiter writes")
	require.NoError(t, b.Commit())
	v, _ := x.get("t", "k")
	require.Equal(t, "b", v)
}

// deadlockFailsTheFirstWaiter: a waits for b, then b for a: the cycle's
// first waiter (a) fails with a conflict, b goes on once a rolls back.
func deadlockFailsTheFirstWaiter(t *testing.T, x *suite) {
	x.put("t", "x", "0")
	x.put("t", "y", "0")
	a, b := x.begin(), x.begin()
	require.NoError(t, a.Put("t", "x", []byte("a")))
	require.NoError(t, b.Put("t", "y", []byte("b")))
	wa := x.async(func() error { return a.Put("t", "y", []byte("a")) })
	x.blocks(wa, "a waits for b's lock on y")
	wb := x.async(func() error { return b.Put("t", "x", []byte("b")) })
	require.ErrorIs(t, x.result(wa), adapters.ErrConflict, "a, the first waiter, is the deadlock's victim")
	x.blocks(wb, "b waits for a's lock on x until a ends")
	require.NoError(t, a.Rollback())
	require.NoError(t, x.result(wb))
	require.NoError(t, b.Commit())
	v, _ := x.get("t", "x")
	require.Equal(t, "b", v)
}

// waiterWithoutSchedulerBlocks: without the harness's scheduler (a
// free-running run), a waiter blocks its goroutine until the holder ends.
func waiterWithoutSchedulerBlocks(t *testing.T, x *suite) {
	x.s.(adapters.LockWaiter).SetLockScheduler(nil)
	a, b := x.begin(), x.begin()
	require.NoError(t, a.Put("t", "k", []byte("a")))
	w := x.async(func() error { return b.Put("t", "k", []byte("b")) })
	select {
	case err := <-w.done:
		t.Fatalf("the write returned (%v) while the lock was held", err)
	case <-time.After(50 * time.Millisecond):
	}
	require.NoError(t, a.Commit())
	require.NoError(t, x.result(w), "read committed: the waiter writes once the holder committed")
	require.NoError(t, b.Commit())
	v, _ := x.get("t", "k")
	require.Equal(t, "b", v)
}

func readOnlyCannotWrite(t *testing.T, x *suite) {
	tx := x.beginWith(adapters.TxOptions{ReadOnly: true})
	require.Error(t, tx.Put("t", "k", []byte("1")))
}

// nonRepeatableRead: a key read twice, with a commit between the reads.
func nonRepeatableRead(t *testing.T, x *suite) {
	x.put("t", "k", "1")
	a := x.begin()
	require.Equal(t, "1", x.read(a, "t", "k"))
	x.put("t", "k", "2")
	want := map[level]string{rc: "2", rr: "1", ser: "1"}[x.level]
	require.Equal(t, want, x.read(a, "t", "k"), "the second read at %s", x.level)
}

// lostUpdate: two transactions read a counter without a lock and write
// it back, one after the other.
func lostUpdate(t *testing.T, x *suite) {
	x.put("t", "n", "1")
	a, b := x.begin(), x.begin()
	require.Equal(t, "1", x.read(a, "t", "n"))
	require.Equal(t, "1", x.read(b, "t", "n"))
	require.NoError(t, a.Put("t", "n", []byte("2")))
	require.NoError(t, a.Commit())
	err := b.Put("t", "n", []byte("2"))
	if x.level == rc {
		require.NoError(t, err, "read committed: b writes on the newest row")
		require.NoError(t, b.Commit())
		v, _ := x.get("t", "n")
		require.Equal(t, "2", v, "two increments, one lost")
		return
	}
	require.ErrorIs(t, err, adapters.ErrConflict, "%s: first updater wins", x.level)
}

// lostUpdateAfterAWait: the same, but b writes while a still holds the
// row: b waits, then writes (read committed) or fails.
func lostUpdateAfterAWait(t *testing.T, x *suite) {
	x.put("t", "n", "1")
	a, b := x.begin(), x.begin()
	require.Equal(t, "1", x.read(a, "t", "n"))
	require.Equal(t, "1", x.read(b, "t", "n"))
	require.NoError(t, a.Put("t", "n", []byte("2")))
	w := x.async(func() error { return b.Put("t", "n", []byte("2")) })
	x.blocks(w, "b's write of the row a holds")
	require.NoError(t, a.Commit())
	err := x.result(w)
	if x.level == rc {
		require.NoError(t, err)
		require.NoError(t, b.Commit())
		v, _ := x.get("t", "n")
		require.Equal(t, "2", v, "the lost update")
		return
	}
	require.ErrorIs(t, err, adapters.ErrConflict, "%s: the row changed since b's snapshot", x.level)
}

// getForUpdateWaits: a read for update of a row another holds waits; at
// read committed it then reads the newest version.
func getForUpdateWaits(t *testing.T, x *suite) {
	x.put("t", "k", "1")
	a, b := x.begin(), x.begin()
	_, _, err := b.Get("other", "x") // b's snapshot, at repeatable read
	require.NoError(t, err)
	_, _, err = a.GetForUpdate("t", "k")
	require.NoError(t, err)
	var got []byte
	w := x.async(func() (err error) {
		got, _, err = b.GetForUpdate("t", "k")
		return err
	})
	x.blocks(w, "a read for update of a locked row")
	require.NoError(t, a.Put("t", "k", []byte("2")))
	require.NoError(t, a.Commit())
	err = x.result(w)
	if x.level == rc {
		require.NoError(t, err)
		require.Equal(t, "2", string(got), "read committed: the newest version")
		return
	}
	require.ErrorIs(t, err, adapters.ErrConflict, "%s: the row changed since the snapshot", x.level)
}

// getForUpdateOfAbsentKey: SELECT ... FOR UPDATE of a key that has no row
// locks nothing, so another transaction may insert it and commit.
func getForUpdateOfAbsentKey(t *testing.T, x *suite) {
	a, b := x.begin(), x.begin()
	_, ok, err := a.GetForUpdate("t", "k")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, b.Insert("t", "k", []byte("b")), "no row was locked")
	require.NoError(t, b.Commit())
	v, ok, err := a.GetForUpdate("t", "k")
	require.NoError(t, err)
	if x.level == rc {
		require.True(t, ok, "read committed: the row committed since is there")
		require.Equal(t, "b", string(v))
		require.NoError(t, a.Put("t", "k", []byte("a")))
		return
	}
	require.False(t, ok, "%s: the row committed since is not in the snapshot", x.level)
	require.ErrorIs(t, a.Put("t", "k", []byte("a")), adapters.ErrConflict, "writing it is a conflict")
}

// insertWaitsForARacingInsert: two transactions insert the same key; the
// second waits for the first, and finds the key (read committed) or fails
// to serialize once the first commits.
func insertWaitsForARacingInsert(t *testing.T, x *suite) {
	a, b := x.begin(), x.begin()
	_, _, err := b.Get("other", "x") // b's snapshot, at repeatable read
	require.NoError(t, err)
	require.NoError(t, a.Insert("processed", "m1", nil))
	w := x.async(func() error { return b.Insert("processed", "m1", nil) })
	x.blocks(w, "an insert of a key another is inserting")
	require.NoError(t, a.Commit())
	err = x.result(w)
	if x.level == rc {
		require.ErrorIs(t, err, adapters.ErrExists)
		return
	}
	require.ErrorIs(t, err, adapters.ErrConflict, "%s: the row is not in b's snapshot", x.level)
}

// outcome runs steps of two or three transactions in order and reports
// which transactions failed with a conflict (at a statement or at
// commit); a transaction whose statement failed skips its later steps.
type step struct {
	tx int
	do func(tx adapters.Tx) error
}

func (x *suite) outcome(n int, steps []step) []bool {
	x.t.Helper()
	txs := make([]adapters.StoreTx, n)
	for i := range txs {
		txs[i] = x.begin()
	}
	failed := make([]bool, n)
	for _, s := range steps {
		if failed[s.tx] {
			continue
		}
		if err := s.do(txs[s.tx]); err != nil {
			require.ErrorIs(x.t, err, adapters.ErrConflict)
			failed[s.tx] = true
			_ = txs[s.tx].Rollback()
		}
	}
	return failed
}

func reads(keys ...string) func(adapters.Tx) error {
	return func(tx adapters.Tx) error {
		for _, k := range keys {
			if _, _, err := tx.Get("t", k); err != nil {
				return err
			}
		}
		return nil
	}
}

func writes(key, value string) func(adapters.Tx) error {
	return func(tx adapters.Tx) error { return tx.Put("t", key, []byte(value)) }
}

func commit(tx adapters.Tx) error { return tx.Commit() }

func count(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// writeSkew: two transactions each read x and y and write a different
// one of them. Only serializable forbids that both commit.
func writeSkew(t *testing.T, x *suite) {
	x.put("t", "x", "1")
	x.put("t", "y", "1")
	failed := x.outcome(2, []step{
		{0, reads("x", "y")}, {1, reads("x", "y")},
		{0, writes("x", "0")}, {1, writes("y", "0")},
		{0, commit}, {1, commit},
	})
	if x.level == ser {
		require.Equal(t, 1, count(failed), "serializable: one of the two fails (%v)", failed)
		return
	}
	require.Equal(t, 0, count(failed), "%s allows write skew", x.level)
}

// readOnlyAnomaly is Fekete, O'Neil and O'Neil's read-only transaction
// anomaly: T2 reads x and y; T3 changes x and commits; T1 reads x and y
// and commits; T2 writes y and commits. Snapshot isolation lets all three
// commit; serializable fails one.
func readOnlyAnomaly(t *testing.T, x *suite) {
	x.put("t", "x", "0")
	x.put("t", "y", "0")
	failed := x.outcome(3, []step{
		{1, reads("x", "y")},
		{2, writes("x", "20")}, {2, commit},
		{0, reads("x", "y")}, {0, commit},
		{1, writes("y", "-11")}, {1, commit},
	})
	if x.level == ser {
		require.Equal(t, 1, count(failed), "serializable: one fails (%v)", failed)
		require.False(t, failed[2], "not the one that committed first")
		return
	}
	require.Equal(t, 0, count(failed), "%s allows the read-only anomaly", x.level)
}

// lookupsThenInserts: two transactions each look up an absent key of a
// small table and then insert it (a processed-id check and its mark). No
// key is shared, but on PostgreSQL a lookup's predicate lock covers the
// index page, and a small table's index is one page: at serializable the
// two inserts are a dangerous structure and one fails.
func lookupsThenInserts(t *testing.T, x *suite) {
	x.seedProcessed()
	failed := x.outcome(2, []step{
		{0, lookUp("a")}, {1, lookUp("b")},
		{0, insertKey("a")}, {1, insertKey("b")},
		{0, commit}, {1, commit},
	})
	if x.level == ser {
		require.Equal(t, 1, count(failed), "serializable: one of the two fails (%v)", failed)
		return
	}
	require.Equal(t, 0, count(failed), "%s: disjoint keys", x.level)
}

// lookupAfterInsert: as lookupsThenInserts, but the second transaction
// looks its key up after the first inserted its own: on PostgreSQL that
// lookup examines no entry of the first's, so only one read-write
// dependency forms, and both commit at every level.
func lookupAfterInsert(t *testing.T, x *suite) {
	x.seedProcessed()
	failed := x.outcome(2, []step{
		{0, lookUp("a")}, {0, insertKey("a")}, {1, lookUp("b")}, {1, insertKey("b")},
		{1, commit}, {0, commit},
	})
	require.Equal(t, 0, count(failed), "%s: %v", x.level, failed)
}

// seedProcessed commits a row of the processed table, so that the index
// the lookups scan is not empty.
func (x *suite) seedProcessed() {
	x.t.Helper()
	seed := x.begin()
	require.NoError(x.t, seed.Insert("processed", "seed", nil))
	require.NoError(x.t, seed.Commit())
}

// lookUp reads a processed id (absent in these cases).
func lookUp(key string) func(adapters.Tx) error {
	return func(tx adapters.Tx) error {
		_, _, err := tx.Get("processed", key)
		return err
	}
}

// insertKey marks a processed id.
func insertKey(key string) func(adapters.Tx) error {
	return func(tx adapters.Tx) error { return tx.Insert("processed", key, nil) }
}

func claimSkipsWhatAnotherHolds(t *testing.T, x *suite) {
	for _, k := range []string{"a", "b", "c"} {
		x.put("outbox", k, `"`+k+`"`)
	}
	first, second := x.begin(), x.begin()
	require.NoError(t, first.Delete("outbox", "b"), "the first dispatcher holds b")
	rows, err := second.Claim("outbox")
	require.NoError(t, err)
	require.Equal(t, []adapters.Row{{Key: "a", Value: []byte(`"a"`)}, {Key: "c", Value: []byte(`"c"`)}}, rows, "the second skips it")
	rows, err = first.Claim("outbox")
	require.NoError(t, err)
	require.Empty(t, rows, "the second holds what it claimed")
	require.NoError(t, second.Rollback())
	require.NoError(t, first.Commit())
	late := x.begin()
	_, _, err = late.Get("other", "x") // late's snapshot, at repeatable read
	require.NoError(t, err)
	x.put("outbox", "c", `"c2"`)
	rows, err = late.Claim("outbox")
	if x.level == rc {
		require.NoError(t, err)
		require.Equal(t, []adapters.Row{{Key: "a", Value: []byte(`"a"`)}, {Key: "c", Value: []byte(`"c2"`)}}, rows)
		return
	}
	require.ErrorIs(t, err, adapters.ErrConflict, "%s: a row changed since the snapshot is a conflict", x.level)
}

// transactionAsksForItsLevel: a transaction that asks for a level gets it,
// whatever the store's default.
func transactionAsksForItsLevel(t *testing.T, x *suite) {
	x.put("t", "k", "1")
	for _, l := range adapters.Isolations() {
		a := x.beginWith(adapters.TxOptions{Isolation: l})
		require.Equal(t, "1", x.read(a, "t", "k"))
		x.put("t", "k", "2")
		want := map[level]string{rc: "2", rr: "1", ser: "1"}[l]
		require.Equal(t, want, x.read(a, "t", "k"), "a %s transaction on a %s store", l, x.level)
		require.NoError(t, a.Rollback())
		x.put("t", "k", "1")
	}
}

// lockConflicts: how histories before format 1.3 ran: repeatable read
// with the snapshot taken at begin, and a write that meets a lock failing
// at once.
func lockConflicts(t *testing.T, x *suite) {
	x.put("t", "k", "1")
	a := x.begin()
	x.put("t", "k", "2")
	require.Equal(t, "1", x.read(a, "t", "k"), "the snapshot is taken at begin")
	b := x.begin()
	require.NoError(t, b.Put("t", "k", []byte("b")))
	c := x.begin()
	require.ErrorIs(t, c.Put("t", "k", []byte("c")), adapters.ErrConflict, "the key is locked by an open transaction")
}
