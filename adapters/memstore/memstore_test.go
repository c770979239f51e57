package memstore

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
)

// The store's semantics are the conformance suite's (conformance_test.go,
// adapters/storetest); these are what only the in-memory store has.

func TestALockTimeoutBoundsTheWait(t *testing.T) {
	s := New()
	s.WaitForLocks(10 * time.Millisecond)
	holder, waiter := s.Begin(), s.Begin()
	require.NoError(t, holder.Put("t", "j", []byte("1")))
	err := waiter.Put("t", "j", []byte("2"))
	require.ErrorIs(t, err, adapters.ErrConflict)
	require.Contains(t, err.Error(), "lock timeout")
}

// Without the harness's scheduler, goroutines block on each other's locks;
// a cycle of waits still ends, with one victim.
func TestBlockedGoroutinesDeadlockWithAVictim(t *testing.T) {
	s := New()
	a, b := s.Begin(), s.Begin()
	require.NoError(t, a.Put("t", "x", []byte("a")))
	require.NoError(t, b.Put("t", "y", []byte("b")))
	errs := make(chan error, 2)
	go func() {
		err := a.Put("t", "y", []byte("a"))
		if err != nil {
			_ = a.Rollback()
		}
		errs <- err
	}()
	for {
		s.mu.Lock()
		_, waiting := s.waits.Holder(a)
		s.mu.Unlock()
		if waiting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	err := b.Put("t", "x", []byte("b"))
	require.NoError(t, err, "b is not the victim: a began waiting first")
	require.ErrorIs(t, <-errs, adapters.ErrConflict)
	require.NoError(t, b.Commit())
}

func TestSerializableReadOnlyDeferrableSeesNoAnomaly(t *testing.T) {
	s := New()
	s.SetIsolation(adapters.Serializable)
	ro := s.BeginTx(adapters.TxOptions{ReadOnly: true, Deferrable: true})
	_, _, err := ro.Get("t", "x")
	require.NoError(t, err)
	require.ErrorIs(t, ro.Put("t", "x", nil), ErrReadOnly)
	require.NoError(t, ro.Commit())
}
