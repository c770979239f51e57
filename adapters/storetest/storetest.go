// Package storetest is the conformance suite of adapters.Store: the
// semantics every backend must share (snapshot isolation, first updater
// wins, atomic commits, unique inserts, crashes that leave no trace), so
// that a plan gives the same verdict on every backend. Backends run it from
// their tests.
package storetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
)

// Run runs the suite against fresh, empty stores made by open.
func Run(t *testing.T, open func(t *testing.T) adapters.Store) {
	tests := map[string]func(*testing.T, adapters.Store){
		"commit is atomic and visible":                  commitIsAtomic,
		"uncommitted work leaves no trace":              uncommittedLeavesNoTrace,
		"reads see the snapshot":                        readsSeeTheSnapshot,
		"first updater wins":                            firstUpdaterWins,
		"a crash releases what it held":                 crashReleases,
		"insert is a unique constraint":                 insertIsUnique,
		"an insert that finds its key waits not":        insertThatFindsItsKey,
		"scan sees own writes in key order":             scanSeesOwnWrites,
		"reset empties the store":                       resetEmpties,
		"get for update takes the lock":                 getForUpdateLocks,
		"get for update sees later commits":             getForUpdateSeesLaterCommits,
		"get for update of an absent key locks nothing": getForUpdateOfAbsentKey,
		"declared tables keep their values":             declaredTablesKeepTheirValues,
		"claim skips what another holds":                claimSkipsWhatAnotherHolds,
		"a crash releases what it claimed":              crashReleasesClaims,
	}
	for name, test := range tests {
		t.Run(name, func(t *testing.T) { test(t, open(t)) })
	}
}

func begin(t *testing.T, s adapters.Store) adapters.StoreTx {
	t.Helper()
	tx, err := s.Begin()
	require.NoError(t, err)
	return tx
}

func get(t *testing.T, s adapters.Store, table, key string) (string, bool) {
	t.Helper()
	tx := begin(t, s)
	defer tx.Rollback()
	v, ok, err := tx.Get(table, key)
	require.NoError(t, err)
	return string(v), ok
}

func commitIsAtomic(t *testing.T, s adapters.Store) {
	tx := begin(t, s)
	require.NoError(t, tx.Put("t", "a", []byte("1")))
	require.NoError(t, tx.Put("t", "b", []byte("2")))
	v, ok, err := tx.Get("t", "a")
	require.NoError(t, err)
	require.True(t, ok, "a transaction reads its own writes")
	require.Equal(t, "1", string(v))
	_, ok = get(t, s, "t", "a")
	require.False(t, ok, "uncommitted writes are invisible")
	require.Equal(t, []string{"t/a", "t/b"}, tx.Writes())
	require.NoError(t, tx.Commit())
	v2, _ := get(t, s, "t", "b")
	require.Equal(t, "2", v2)
}

func uncommittedLeavesNoTrace(t *testing.T, s adapters.Store) {
	tx := begin(t, s)
	require.NoError(t, tx.Put("t", "a", []byte("1")))
	require.NoError(t, tx.Rollback())
	_, ok := get(t, s, "t", "a")
	require.False(t, ok)
	require.Error(t, tx.Commit(), "a finished transaction cannot commit")
}

func readsSeeTheSnapshot(t *testing.T, s adapters.Store) {
	old := begin(t, s)
	defer old.Rollback()
	w := begin(t, s)
	require.NoError(t, w.Put("t", "a", []byte("new")))
	require.NoError(t, w.Commit())
	_, ok, err := old.Get("t", "a")
	require.NoError(t, err)
	require.False(t, ok, "a transaction sees the state as of its beginning")
}

func firstUpdaterWins(t *testing.T, s adapters.Store) {
	first, second := begin(t, s), begin(t, s)
	defer second.Rollback()
	require.NoError(t, first.Put("t", "counter", []byte("1")))
	require.ErrorIs(t, second.Put("t", "counter", []byte("1")), adapters.ErrConflict, "the key is locked by an open transaction")
	require.NoError(t, first.Commit())
	late := begin(t, s)
	defer late.Rollback()
	third := begin(t, s)
	require.NoError(t, third.Put("t", "counter", []byte("3")))
	require.NoError(t, third.Commit())
	require.ErrorIs(t, late.Put("t", "counter", []byte("2")), adapters.ErrConflict, "the key changed since the transaction began")
	v, _ := get(t, s, "t", "counter")
	require.Equal(t, "3", v, "no lost update")
}

// crashReleasesClaims: rows claimed by a transaction that crashed are
// there for the next claim at once (a dispatcher that crashed mid-pass
// leaves its rows to the next pass, not locked).
func crashReleasesClaims(t *testing.T, s adapters.Store) {
	for round := range 20 {
		put(t, s, "outbox", "r", fmt.Sprint(round))
		a := begin(t, s)
		rows, err := a.Claim("outbox")
		require.NoError(t, err)
		require.Len(t, rows, 1)
		require.NoError(t, a.Delete("outbox", "r"))
		require.NoError(t, a.Abort())
		b := begin(t, s)
		rows, err = b.Claim("outbox")
		require.NoError(t, err)
		require.Len(t, rows, 1, "round %d: the crashed claim's row is free", round)
		require.NoError(t, b.Rollback())
	}
}

func crashReleases(t *testing.T, s adapters.Store) {
	a := begin(t, s)
	require.NoError(t, a.Put("t", "k", []byte("1")))
	require.NoError(t, a.Abort())
	b := begin(t, s)
	require.NoError(t, b.Put("t", "k", []byte("2")), "the crashed transaction's lock is gone")
	require.NoError(t, b.Commit())
	v, _ := get(t, s, "t", "k")
	require.Equal(t, "2", v, "and its write with it")
}

func insertIsUnique(t *testing.T, s adapters.Store) {
	a, b := begin(t, s), begin(t, s)
	defer b.Rollback()
	require.NoError(t, a.Insert("processed", "m1", nil))
	require.ErrorIs(t, b.Insert("processed", "m1", nil), adapters.ErrConflict, "two racing inserts cannot both proceed")
	require.NoError(t, a.Commit())
	c := begin(t, s)
	defer c.Rollback()
	require.ErrorIs(t, c.Insert("processed", "m1", nil), adapters.ErrExists)
}

func insertThatFindsItsKey(t *testing.T, s adapters.Store) {
	seed := begin(t, s)
	require.NoError(t, seed.Insert("processed", "m1", nil))
	require.NoError(t, seed.Commit())
	a := begin(t, s)
	require.ErrorIs(t, a.Insert("processed", "m1", nil), adapters.ErrExists)
	b := begin(t, s)
	require.NoError(t, b.Delete("processed", "m1"), "the insert that found its key holds no lock")
	require.NoError(t, b.Commit())
	require.NoError(t, a.Rollback())
}

func scanSeesOwnWrites(t *testing.T, s adapters.Store) {
	seed := begin(t, s)
	require.NoError(t, seed.Put("t", "b", []byte("2")))
	require.NoError(t, seed.Put("t", "a", []byte("1")))
	require.NoError(t, seed.Put("other", "z", []byte("9")))
	require.NoError(t, seed.Commit())
	tx := begin(t, s)
	defer tx.Rollback()
	require.NoError(t, tx.Delete("t", "a"))
	require.NoError(t, tx.Put("t", "c", []byte("3")))
	rows, err := tx.Scan("t")
	require.NoError(t, err)
	require.Equal(t, []adapters.Row{{Key: "b", Value: []byte("2")}, {Key: "c", Value: []byte("3")}}, rows)
}

func resetEmpties(t *testing.T, s adapters.Store) {
	tx := begin(t, s)
	require.NoError(t, tx.Put("t", "a", []byte("1")))
	require.NoError(t, tx.Commit())
	require.NoError(t, s.Reset())
	_, ok := get(t, s, "t", "a")
	require.False(t, ok)
}

// put commits one write.
func put(t *testing.T, s adapters.Store, table, key, value string) {
	t.Helper()
	tx := begin(t, s)
	require.NoError(t, tx.Put(table, key, []byte(value)))
	require.NoError(t, tx.Commit())
}

func getForUpdateLocks(t *testing.T, s adapters.Store) {
	put(t, s, "t", "k", "1")
	a, b := begin(t, s), begin(t, s)
	defer b.Rollback()
	v, ok, err := a.GetForUpdate("t", "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "1", string(v))
	_, _, err = b.GetForUpdate("t", "k")
	require.ErrorIs(t, err, adapters.ErrConflict, "the row is locked by the first reader for update")
	c := begin(t, s)
	defer c.Rollback()
	require.ErrorIs(t, c.Put("t", "k", []byte("3")), adapters.ErrConflict, "and so is a write")
	require.NoError(t, a.Put("t", "k", []byte("2")))
	require.NoError(t, a.Commit())
	got, _ := get(t, s, "t", "k")
	require.Equal(t, "2", got)
}

// getForUpdateOfAbsentKey: SELECT ... FOR UPDATE of a key that has no row
// in the snapshot locks nothing, so another transaction may insert it and
// commit; the first one's own write of the key is then the conflict.
func getForUpdateOfAbsentKey(t *testing.T, s adapters.Store) {
	a, b := begin(t, s), begin(t, s)
	defer a.Rollback()
	_, ok, err := a.GetForUpdate("t", "k")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, b.Insert("t", "k", []byte("b")), "no row was locked")
	require.NoError(t, b.Commit())
	_, ok, err = a.GetForUpdate("t", "k")
	require.NoError(t, err)
	require.False(t, ok, "the row committed since is not in the snapshot")
	require.ErrorIs(t, a.Put("t", "k", []byte("a")), adapters.ErrConflict, "writing it is a conflict")
}

func getForUpdateSeesLaterCommits(t *testing.T, s adapters.Store) {
	put(t, s, "t", "k", "1")
	late := begin(t, s)
	defer late.Rollback()
	put(t, s, "t", "k", "2")
	_, _, err := late.GetForUpdate("t", "k")
	require.ErrorIs(t, err, adapters.ErrConflict, "the row changed since the transaction began")
}

// declaredTablesKeepTheirValues writes, reads and scans a row of every
// declared table, with a value of the column's type.
func declaredTablesKeepTheirValues(t *testing.T, s adapters.Store) {
	for _, spec := range strategykit.Tables() {
		var value []byte
		switch {
		case spec.Value == "":
		case spec.Type == "bigint":
			value = []byte("42")
		default:
			value = []byte(`{"a":[1,"x"]}`)
		}
		tx := begin(t, s)
		require.NoError(t, tx.Insert(spec.Name, "k2", value), spec.Name)
		require.NoError(t, tx.Put(spec.Name, "k1", value), spec.Name)
		require.ErrorIs(t, tx.Insert(spec.Name, "k1", value), adapters.ErrExists, spec.Name)
		rows, err := tx.Scan(spec.Name)
		require.NoError(t, err)
		require.Equal(t, []adapters.Row{{Key: "k1", Value: value}, {Key: "k2", Value: value}}, rows, spec.Name)
		require.NoError(t, tx.Delete(spec.Name, "k2"), spec.Name)
		require.NoError(t, tx.Commit())
		v, ok := get(t, s, spec.Name, "k1")
		require.True(t, ok, spec.Name)
		require.Equal(t, string(value), v, spec.Name)
		_, ok = get(t, s, spec.Name, "k2")
		require.False(t, ok, spec.Name)
	}
}

func claimSkipsWhatAnotherHolds(t *testing.T, s adapters.Store) {
	for _, k := range []string{"a", "b", "c"} {
		put(t, s, "outbox", k, `"`+k+`"`)
	}
	first, second := begin(t, s), begin(t, s)
	require.NoError(t, first.Delete("outbox", "b"), "the first dispatcher holds b")
	rows, err := second.Claim("outbox")
	require.NoError(t, err)
	require.Equal(t, []adapters.Row{{Key: "a", Value: []byte(`"a"`)}, {Key: "c", Value: []byte(`"c"`)}}, rows, "the second skips it")
	rows, err = first.Claim("outbox")
	require.NoError(t, err)
	require.Empty(t, rows, "the second holds what it claimed")
	require.NoError(t, second.Rollback())
	require.NoError(t, first.Commit())
	late := begin(t, s)
	defer late.Rollback()
	put(t, s, "outbox", "c", `"c2"`)
	_, err = late.Claim("outbox")
	require.ErrorIs(t, err, adapters.ErrConflict, "a row changed since the snapshot is a conflict")
}
