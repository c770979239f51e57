// Package rediscache is the Redis cache backend (Backend{Addr}): the
// commands of adapters.Cache run on a real Redis server through go-redis,
// so that a handler's SET NX is held to what Redis does, not to a model of
// it. Each store has a namespace of its own on the server (a random key
// prefix), emptied by Reset and deleted by Close.
//
// Expiry follows the run's time, not the server's clock: a run's time jumps
// by hours when a late copy arrives, and a server cannot be made to jump
// with it. So each command is one Lua script, atomic on the server, given
// the run's time: a key's value is a plain Redis string (INCR is Redis's
// own), and its expiry is kept beside it and judged as Redis judges its own
// (a key is gone once the time is past its expiry, and deleted when a
// command finds it so). TestTheScriptsFollowNativeExpiry in this package
// holds the scripts to the server's own expiry, with real times to live.
package rediscache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oncecheck/oncecheck/adapters"
)

// AddrEnv names the environment variable that gives the server's address
// (host:port, or a redis:// URL) when Backend.Addr is empty.
const AddrEnv = "ONCECHECK_REDIS"

// DefaultAddr is the server tried when neither Backend.Addr nor
// $ONCECHECK_REDIS names one.
const DefaultAddr = "127.0.0.1:6379"

// Backend is the Redis cache backend.
type Backend struct {
	// Addr is the server: host:port or a redis:// URL (default
	// $ONCECHECK_REDIS, else DefaultAddr).
	Addr string
}

// Name implements adapters.CacheBackend.
func (Backend) Name() string { return "redis" }

// Open implements adapters.CacheBackend: it connects and checks that the
// server answers. A server that does not answer is adapters.ErrNoServer.
func (b Backend) Open() (adapters.CacheStore, error) {
	addr := b.Addr
	if addr == "" {
		addr = os.Getenv(AddrEnv)
	}
	if addr == "" {
		addr = DefaultAddr
	}
	opts := &redis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		var err error
		if opts, err = redis.ParseURL(addr); err != nil {
			return nil, fmt.Errorf("redis address %q: %w", addr, err)
		}
	}
	opts.DialTimeout = 2 * time.Second
	opts.MaxRetries = -1 // a command is sent once: a retry could apply it twice
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("%w: redis at %s does not answer (set $%s): %v", adapters.ErrNoServer, opts.Addr, AddrEnv, err)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Store{client: client, prefix: "oncecheck:" + hex.EncodeToString(id[:]) + ":"}, nil
}

// Store is a namespace on a Redis server. Its methods are safe for
// concurrent use.
type Store struct {
	client *redis.Client
	prefix string
}

var _ adapters.CacheStore = (*Store)(nil)

// At implements adapters.CacheStore.
func (s *Store) At(now time.Time) adapters.Cache { return view{s, now.UnixMilli()} }

// Reset implements adapters.CacheStore: it deletes the namespace's keys.
func (s *Store) Reset() error {
	ctx := context.Background()
	iter := s.client.Scan(ctx, 0, s.prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("%w: redis: scan %s*: %v", adapters.ErrBackend, s.prefix, err)
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		if err := s.client.Unlink(ctx, keys[:n]...).Err(); err != nil {
			return fmt.Errorf("%w: redis: unlink: %v", adapters.ErrBackend, err)
		}
		keys = keys[n:]
	}
	return nil
}

// Close implements adapters.CacheStore: it deletes the namespace and
// closes the connections.
func (s *Store) Close() error {
	return errors.Join(s.Reset(), s.client.Close())
}

// live, at the start of every script, deletes the key (KEYS[1], its
// expiry in KEYS[2]) if its expiry (milliseconds) is before now (ARGV[1]),
// as Redis deletes a key it finds expired.
const live = `
local now = tonumber(ARGV[1])
local e = redis.call('GET', KEYS[2])
if e and now > tonumber(e) then redis.call('DEL', KEYS[1], KEYS[2]) end
local function expire(ttl)
  if ttl > 0 then redis.call('SET', KEYS[2], now + ttl) else redis.call('DEL', KEYS[2]) end
end
`

var (
	setNXScript = redis.NewScript(live + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
expire(tonumber(ARGV[3]))
return 1`)
	setScript = redis.NewScript(live + `
redis.call('SET', KEYS[1], ARGV[2])
expire(tonumber(ARGV[3]))
return 1`)
	getScript = redis.NewScript(live + `
return redis.call('GET', KEYS[1])`)
	delScript = redis.NewScript(live + `
return redis.call('DEL', KEYS[1], KEYS[2]) > 0 and 1 or 0`)
	incrScript = redis.NewScript(live + `
return redis.call('INCR', KEYS[1])`)
	expireScript = redis.NewScript(live + `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
expire(tonumber(ARGV[2]))
return 1`)
)

// view is the namespace at one time, in Unix milliseconds.
type view struct {
	s   *Store
	now int64
}

func (v view) run(script *redis.Script, key string, args ...any) *redis.Cmd {
	keys := []string{v.s.prefix + "v:" + key, v.s.prefix + "e:" + key}
	return script.Run(context.Background(), v.s.client, keys, append([]any{v.now}, args...)...)
}

// failed turns a server's error into the adapters' terms.
func failed(cmd string, err error) error {
	if strings.Contains(err.Error(), "not an integer") {
		return adapters.ErrNotInteger
	}
	return fmt.Errorf("%w: redis %s: %v", adapters.ErrBackend, cmd, err)
}

func (v view) SetNX(key, value string, ttl time.Duration) (bool, error) {
	n, err := v.run(setNXScript, key, value, ttl.Milliseconds()).Int()
	if err != nil {
		return false, failed("SET NX", err)
	}
	return n == 1, nil
}

func (v view) Set(key, value string, ttl time.Duration) error {
	if err := v.run(setScript, key, value, ttl.Milliseconds()).Err(); err != nil {
		return failed("SET", err)
	}
	return nil
}

func (v view) Get(key string) (string, bool, error) {
	s, err := v.run(getScript, key).Text()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, failed("GET", err)
	}
	return s, true, nil
}

func (v view) Del(key string) (bool, error) {
	n, err := v.run(delScript, key).Int()
	if err != nil {
		return false, failed("DEL", err)
	}
	return n == 1, nil
}

func (v view) Incr(key string) (int64, error) {
	n, err := v.run(incrScript, key).Int64()
	if err != nil {
		return 0, failed("INCR", err)
	}
	return n, nil
}

func (v view) Expire(key string, ttl time.Duration) (bool, error) {
	n, err := v.run(expireScript, key, ttl.Milliseconds()).Int()
	if err != nil {
		return false, failed("EXPIRE", err)
	}
	return n == 1, nil
}
