// Package memcache is the in-memory cache backend (Backend{}), the
// default: a map of keys to values and expiry times, behind one mutex, so
// that each command is atomic and visible at once. Expiry is judged at the
// time the harness gives (adapters.CacheStore.At), so a run's cache
// expires in the run's simulated time and the run stays deterministic.
// adapters/cachetest holds it and the Redis backend to the same semantics.
package memcache

import (
	"strconv"
	"sync"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
)

// Backend is the in-memory cache backend.
type Backend struct{}

// Name implements adapters.CacheBackend.
func (Backend) Name() string { return "mem" }

// Open implements adapters.CacheBackend.
func (Backend) Open() (adapters.CacheStore, error) { return New(), nil }

// Store is an in-memory cache store. Its methods are safe for concurrent
// use.
type Store struct {
	mu   sync.Mutex
	keys map[string]entry
}

type entry struct {
	value   string
	expires time.Time // zero: never
}

// New returns an empty store.
func New() *Store { return &Store{keys: map[string]entry{}} }

var _ adapters.CacheStore = (*Store)(nil)

// At implements adapters.CacheStore.
func (s *Store) At(now time.Time) adapters.Cache { return view{s, now} }

// Reset implements adapters.CacheStore.
func (s *Store) Reset() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.keys)
	return nil
}

// Close implements adapters.CacheStore.
func (s *Store) Close() error { return s.Reset() }

// view is the store at one time.
type view struct {
	s   *Store
	now time.Time
}

// live returns the entry of key unless it is absent or expired (an expired
// entry is deleted, as Redis deletes a key it finds expired).
func (v view) live(key string) (entry, bool) {
	e, ok := v.s.keys[key]
	if ok && !e.expires.IsZero() && v.now.After(e.expires) {
		delete(v.s.keys, key)
		return entry{}, false
	}
	return e, ok
}

func (v view) expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return v.now.Add(ttl)
}

func (v view) SetNX(key, value string, ttl time.Duration) (bool, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	if _, ok := v.live(key); ok {
		return false, nil
	}
	v.s.keys[key] = entry{value, v.expiry(ttl)}
	return true, nil
}

func (v view) Set(key, value string, ttl time.Duration) error {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	v.s.keys[key] = entry{value, v.expiry(ttl)}
	return nil
}

func (v view) Get(key string) (string, bool, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	e, ok := v.live(key)
	return e.value, ok, nil
}

func (v view) Del(key string) (bool, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	_, ok := v.live(key)
	delete(v.s.keys, key)
	return ok, nil
}

func (v view) Incr(key string) (int64, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	e, ok := v.live(key)
	n := int64(0)
	if ok {
		var err error
		if n, err = strconv.ParseInt(e.value, 10, 64); err != nil {
			return 0, adapters.ErrNotInteger
		}
	}
	if n == 1<<63-1 {
		return 0, adapters.ErrNotInteger
	}
	n++
	e.value = strconv.FormatInt(n, 10)
	v.s.keys[key] = e
	return n, nil
}

func (v view) Expire(key string, ttl time.Duration) (bool, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	e, ok := v.live(key)
	if !ok {
		return false, nil
	}
	e.expires = v.expiry(ttl)
	v.s.keys[key] = e
	return true, nil
}
