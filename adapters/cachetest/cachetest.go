// Package cachetest is the conformance suite of the cache backends
// (adapters.CacheStore): every backend must give Redis's semantics for the
// commands of adapters.Cache, with expiry judged at the time it is given.
// The in-memory backend runs it, and so does the Redis backend against a
// real server, so that the simulation's cache is held to what Redis does.
// Like storetest, it is imported by tests only.
package cachetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
)

// T0 is the time the suite's commands start at.
var T0 = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Run runs the suite on stores from open, each empty.
func Run(t *testing.T, open func(t *testing.T) adapters.CacheStore) {
	t.Run("SetNXSetsAnAbsentKeyOnly", func(t *testing.T) {
		c := open(t).At(T0)
		set, err := c.SetNX("k", "a", 0)
		require.NoError(t, err)
		require.True(t, set)
		set, err = c.SetNX("k", "b", 0)
		require.NoError(t, err)
		require.False(t, set)
		requireValue(t, c, "k", "a")
	})
	t.Run("AKeyExpiresInTheTimeGiven", func(t *testing.T) {
		s := open(t)
		set, err := s.At(T0).SetNX("k", "a", 10*time.Second)
		require.NoError(t, err)
		require.True(t, set)
		requireValue(t, s.At(T0.Add(10*time.Second-time.Millisecond)), "k", "a")
		requireAbsent(t, s.At(T0.Add(10*time.Second+time.Millisecond)), "k")
		set, err = s.At(T0.Add(11*time.Second)).SetNX("k", "b", 10*time.Second)
		require.NoError(t, err)
		require.True(t, set, "an expired key is absent to SET NX")
		requireValue(t, s.At(T0.Add(20*time.Second)), "k", "b")
	})
	t.Run("SetReplacesTheValueAndTheExpiry", func(t *testing.T) {
		s := open(t)
		require.NoError(t, s.At(T0).Set("k", "a", time.Second))
		require.NoError(t, s.At(T0).Set("k", "b", 0))
		requireValue(t, s.At(T0.Add(time.Hour)), "k", "b")
		require.NoError(t, s.At(T0).Set("k", "c", time.Minute))
		requireAbsent(t, s.At(T0.Add(time.Minute+time.Millisecond)), "k")
	})
	t.Run("DelSaysWhetherTheKeyWasThere", func(t *testing.T) {
		s := open(t)
		c := s.At(T0)
		deleted, err := c.Del("k")
		require.NoError(t, err)
		require.False(t, deleted)
		_, err = c.SetNX("k", "a", time.Second)
		require.NoError(t, err)
		deleted, err = c.Del("k")
		require.NoError(t, err)
		require.True(t, deleted)
		requireAbsent(t, c, "k")
		_, err = c.SetNX("k", "a", time.Second)
		require.NoError(t, err)
		deleted, err = s.At(T0.Add(2 * time.Second)).Del("k")
		require.NoError(t, err)
		require.False(t, deleted, "an expired key is not there to delete")
	})
	t.Run("IncrCountsFromZeroAndKeepsTheExpiry", func(t *testing.T) {
		s := open(t)
		c := s.At(T0)
		for want := int64(1); want <= 3; want++ {
			n, err := c.Incr("n")
			require.NoError(t, err)
			require.Equal(t, want, n)
		}
		requireValue(t, c, "n", "3")
		ok, err := c.Expire("n", time.Minute)
		require.NoError(t, err)
		require.True(t, ok)
		n, err := s.At(T0.Add(30 * time.Second)).Incr("n")
		require.NoError(t, err)
		require.Equal(t, int64(4), n)
		requireAbsent(t, s.At(T0.Add(time.Minute+time.Millisecond)), "n")
		n, err = s.At(T0.Add(2 * time.Minute)).Incr("n")
		require.NoError(t, err)
		require.Equal(t, int64(1), n, "an expired counter starts again")
	})
	t.Run("IncrRefusesAValueThatIsNotAnInteger", func(t *testing.T) {
		c := open(t).At(T0)
		require.NoError(t, c.Set("k", "x", 0))
		_, err := c.Incr("k")
		require.ErrorIs(t, err, adapters.ErrNotInteger)
		require.NoError(t, c.Set("k", "", 0))
		_, err = c.Incr("k")
		require.ErrorIs(t, err, adapters.ErrNotInteger)
		requireValue(t, c, "k", "")
	})
	t.Run("ExpireSetsOrRemovesTheExpiry", func(t *testing.T) {
		s := open(t)
		c := s.At(T0)
		ok, err := c.Expire("k", time.Second)
		require.NoError(t, err)
		require.False(t, ok, "no key to expire")
		require.NoError(t, c.Set("k", "a", time.Second))
		ok, err = c.Expire("k", 0)
		require.NoError(t, err)
		require.True(t, ok)
		requireValue(t, s.At(T0.Add(time.Hour)), "k", "a")
		ok, err = s.At(T0.Add(time.Hour)).Expire("k", time.Second)
		require.NoError(t, err)
		require.True(t, ok)
		requireValue(t, s.At(T0.Add(time.Hour+time.Second-time.Millisecond)), "k", "a")
		requireAbsent(t, s.At(T0.Add(time.Hour+time.Second+time.Millisecond)), "k")
	})
	t.Run("ResetEmptiesTheStore", func(t *testing.T) {
		s := open(t)
		require.NoError(t, s.At(T0).Set("k", "a", 0))
		require.NoError(t, s.Reset())
		requireAbsent(t, s.At(T0), "k")
	})
	t.Run("EachCommandIsAtomic", func(t *testing.T) {
		s := open(t)
		const n = 16
		var wg sync.WaitGroup
		wins := make(chan bool, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				set, err := s.At(T0).SetNX("k", "a", time.Minute)
				if err == nil {
					wins <- set
				}
				_, _ = s.At(T0).Incr("n")
			}()
		}
		wg.Wait()
		close(wins)
		won := 0
		for set := range wins {
			if set {
				won++
			}
		}
		require.Equal(t, 1, won, "one SET NX of %d wins", n)
		requireValue(t, s.At(T0), "n", "16")
	})
}

func requireValue(t *testing.T, c adapters.Cache, key, want string) {
	t.Helper()
	v, ok, err := c.Get(key)
	require.NoError(t, err)
	require.True(t, ok, "%s is present", key)
	require.Equal(t, want, v)
}

func requireAbsent(t *testing.T, c adapters.Cache, key string) {
	t.Helper()
	_, ok, err := c.Get(key)
	require.NoError(t, err)
	require.False(t, ok, "%s is absent", key)
}
