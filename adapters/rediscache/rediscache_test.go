package rediscache_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/cachetest"
	"github.com/oncecheck/oncecheck/adapters/rediscache"
	"github.com/oncecheck/oncecheck/internal/redistest"
)

func open(t *testing.T) adapters.CacheStore {
	t.Helper()
	s, err := rediscache.Backend{Addr: redistest.Addr(t)}.Open()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// TestConformance holds the Redis backend, on a real server, to the suite
// the in-memory cache passes.
func TestConformance(t *testing.T) { cachetest.Run(t, open) }

// TestTheScriptsFollowNativeExpiry runs one scenario twice on the server:
// with Redis's own commands and real times to live, waiting for them to
// pass, and through the backend at the times the waits reach. The answers
// must agree: the backend's expiry is Redis's, on the run's clock.
func TestTheScriptsFollowNativeExpiry(t *testing.T) {
	addr := redistest.Addr(t)
	const ttl = 150 * time.Millisecond
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = client.Close() })
	ns := "oncecheck-native-" + t.Name() + ":"
	t.Cleanup(func() { client.Del(ctx, ns+"k", ns+"n", ns+"p") })

	// What Redis answers, at 0, after 2 ttl (expired), with INCR and SET on
	// keys with times to live.
	var native []any
	set, err := client.SetNX(ctx, ns+"k", "a", ttl).Result()
	require.NoError(t, err)
	native = append(native, set)
	set, err = client.SetNX(ctx, ns+"k", "b", ttl).Result()
	require.NoError(t, err)
	native = append(native, set)
	require.NoError(t, client.Set(ctx, ns+"n", "1", 2*ttl).Err())
	n, err := client.Incr(ctx, ns+"n").Result() // keeps the expiry
	require.NoError(t, err)
	native = append(native, n)
	require.NoError(t, client.Set(ctx, ns+"p", "1", ttl).Err())
	require.NoError(t, client.Set(ctx, ns+"p", "2", 0).Err()) // clears the expiry
	time.Sleep(3 * ttl)
	_, err = client.Get(ctx, ns+"k").Result()
	native = append(native, err == redis.Nil)
	_, err = client.Get(ctx, ns+"n").Result()
	native = append(native, err == redis.Nil)
	v, err := client.Get(ctx, ns+"p").Result()
	require.NoError(t, err)
	native = append(native, v)
	deleted, err := client.Del(ctx, ns+"k").Result()
	require.NoError(t, err)
	native = append(native, deleted == 1)
	set, err = client.SetNX(ctx, ns+"k", "c", ttl).Result()
	require.NoError(t, err)
	native = append(native, set)

	s := open(t)
	at := func(d time.Duration) adapters.Cache { return s.At(cachetest.T0.Add(d)) }
	var scripted []any
	set, err = at(0).SetNX("k", "a", ttl)
	require.NoError(t, err)
	scripted = append(scripted, set)
	set, err = at(0).SetNX("k", "b", ttl)
	require.NoError(t, err)
	scripted = append(scripted, set)
	require.NoError(t, at(0).Set("n", "1", 2*ttl))
	n, err = at(0).Incr("n")
	require.NoError(t, err)
	scripted = append(scripted, n)
	require.NoError(t, at(0).Set("p", "1", ttl))
	require.NoError(t, at(0).Set("p", "2", 0))
	_, ok, err := at(3 * ttl).Get("k")
	require.NoError(t, err)
	scripted = append(scripted, !ok)
	_, ok, err = at(3 * ttl).Get("n")
	require.NoError(t, err)
	scripted = append(scripted, !ok)
	v, _, err = at(3 * ttl).Get("p")
	require.NoError(t, err)
	scripted = append(scripted, v)
	del, err := at(3 * ttl).Del("k")
	require.NoError(t, err)
	scripted = append(scripted, del)
	set, err = at(3*ttl).SetNX("k", "c", ttl)
	require.NoError(t, err)
	scripted = append(scripted, set)

	require.Equal(t, native, scripted)
	require.Equal(t, []any{true, false, int64(2), true, true, "2", false, true}, native)
}

// TestAServerThatDoesNotAnswerIsNoServer holds that a test can tell a
// missing server from a failing one.
func TestAServerThatDoesNotAnswerIsNoServer(t *testing.T) {
	_, err := rediscache.Backend{Addr: "127.0.0.1:1"}.Open()
	require.ErrorIs(t, err, adapters.ErrNoServer)
}
