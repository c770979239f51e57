package memstore

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
)

func TestCommitIsAtomicAndVisible(t *testing.T) {
	s := New()
	tx := s.Begin()
	require.NoError(t, tx.Put("t", "a", []byte("1")))
	require.NoError(t, tx.Put("t", "b", []byte("2")))
	v, ok, err := tx.Get("t", "a")
	require.NoError(t, err)
	require.True(t, ok, "a transaction reads its own writes")
	require.Equal(t, "1", string(v))

	other := s.Begin()
	_, ok, _ = other.Get("t", "a")
	require.False(t, ok, "uncommitted writes are invisible")
	require.NoError(t, tx.Commit())

	rows, err := s.Begin().Scan("t")
	require.NoError(t, err)
	require.Equal(t, []adapters.Row{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}, rows)
}

func TestUncommittedWorkLeavesNoTrace(t *testing.T) {
	s := New()
	tx := s.Begin()
	require.NoError(t, tx.Put("t", "a", []byte("1")))
	require.NoError(t, tx.Rollback())
	_, ok, _ := s.Begin().Get("t", "a")
	require.False(t, ok)
	require.ErrorIs(t, tx.Commit(), ErrDone)
}

func TestFirstUpdaterWins(t *testing.T) {
	s := New()
	first, second := s.Begin(), s.Begin()
	require.NoError(t, first.Put("t", "counter", []byte("1")))
	require.ErrorIs(t, second.Put("t", "counter", []byte("1")), adapters.ErrConflict, "the key is locked by an open transaction")
	require.NoError(t, first.Commit())
	require.ErrorIs(t, second.Put("t", "counter", []byte("2")), adapters.ErrConflict, "the key changed since second began")
	v, ok, err := second.Get("t", "counter")
	require.NoError(t, err)
	require.False(t, ok, "second reads its snapshot: %s", v)
	third := s.Begin()
	require.NoError(t, third.Put("t", "counter", []byte("2")), "a transaction begun after the commit may write")
	require.NoError(t, third.Commit())
	v, _, _ = s.Begin().Get("t", "counter")
	require.Equal(t, "2", string(v))
}

func TestRollbackReleasesLocks(t *testing.T) {
	s := New()
	a, b := s.Begin(), s.Begin()
	require.NoError(t, a.Put("t", "k", []byte("1")))
	require.NoError(t, a.Abort())
	require.NoError(t, b.Put("t", "k", []byte("2")), "the crashed transaction's lock is gone")
	require.NoError(t, b.Commit())
}

func TestInsertIsAUniqueConstraint(t *testing.T) {
	s := New()
	a, b := s.Begin(), s.Begin()
	require.NoError(t, a.Insert("processed", "m1", nil))
	require.ErrorIs(t, b.Insert("processed", "m1", nil), adapters.ErrConflict, "two racing inserts cannot both proceed")
	require.NoError(t, a.Commit())
	require.ErrorIs(t, b.Insert("processed", "m1", nil), adapters.ErrConflict, "inserted since b began")
	c := s.Begin()
	require.ErrorIs(t, c.Insert("processed", "m1", nil), adapters.ErrExists)
}

func TestDeleteAndScanSeeOwnWrites(t *testing.T) {
	s := New()
	seed := s.Begin()
	require.NoError(t, seed.Put("t", "a", []byte("1")))
	require.NoError(t, seed.Commit())
	tx := s.Begin()
	require.NoError(t, tx.Delete("t", "a"))
	require.NoError(t, tx.Put("t", "c", []byte("3")))
	rows, err := tx.Scan("t")
	require.NoError(t, err)
	require.Equal(t, []adapters.Row{{Key: "c", Value: []byte("3")}}, rows)
	require.Equal(t, []string{"t/a", "t/c"}, tx.Writes())
}

func TestAnInsertThatFindsItsKeyTakesNoLock(t *testing.T) {
	s := New()
	seed := s.Begin()
	require.NoError(t, seed.Insert("processed", "m1", nil))
	require.NoError(t, seed.Commit())
	a := s.Begin()
	require.ErrorIs(t, a.Insert("processed", "m1", nil), adapters.ErrExists)
	require.NoError(t, a.Rollback())
	b := s.Begin()
	require.NoError(t, b.Delete("processed", "m1"), "no lock was left behind")
	require.NoError(t, b.Commit())
}

func TestWaitForLocksWaitsForTheHolder(t *testing.T) {
	s := New()
	s.WaitForLocks(5 * time.Second)
	holder, waiter := s.Begin(), s.Begin()
	require.NoError(t, holder.Put("t", "k", []byte("1")))
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = holder.Rollback()
	}()
	require.NoError(t, waiter.Put("t", "k", []byte("2")), "the lock is free once the holder rolls back")
	require.NoError(t, waiter.Commit())

	holder, waiter = s.Begin(), s.Begin()
	require.NoError(t, holder.Put("t", "k", []byte("3")))
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = holder.Commit()
	}()
	require.ErrorIs(t, waiter.Put("t", "k", []byte("4")), adapters.ErrConflict, "the holder committed a change the waiter's snapshot does not have")

	s.WaitForLocks(10 * time.Millisecond)
	holder, waiter = s.Begin(), s.Begin()
	require.NoError(t, holder.Put("t", "j", []byte("1")))
	err := waiter.Put("t", "j", []byte("2"))
	require.ErrorIs(t, err, adapters.ErrConflict)
	require.Contains(t, err.Error(), "stayed locked")
}
