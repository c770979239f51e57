package memstore

import (
	"testing"

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

func TestConflictingWritesAreDetectedAtCommit(t *testing.T) {
	s := New()
	first, second := s.Begin(), s.Begin()
	_, _, _ = first.Get("t", "counter")
	_, _, _ = second.Get("t", "counter")
	require.NoError(t, first.Put("t", "counter", []byte("1")))
	require.NoError(t, second.Put("t", "counter", []byte("1")))
	require.NoError(t, first.Commit())
	require.ErrorIs(t, second.Commit(), adapters.ErrConflict, "a lost update is refused")
	v, _, _ := s.Begin().Get("t", "counter")
	require.Equal(t, "1", string(v))
}

func TestInsertIsAUniqueConstraint(t *testing.T) {
	s := New()
	a, b := s.Begin(), s.Begin()
	require.NoError(t, a.Insert("processed", "m1", nil))
	require.NoError(t, b.Insert("processed", "m1", nil))
	require.NoError(t, a.Commit())
	require.ErrorIs(t, b.Commit(), adapters.ErrConflict, "two racing inserts cannot both commit")
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
