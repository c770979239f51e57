package memcache_test

import (
	"testing"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/cachetest"
	"github.com/oncecheck/oncecheck/adapters/memcache"
)

// TestConformance holds the in-memory cache to the suite the Redis backend
// passes against a real server.
func TestConformance(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) adapters.CacheStore {
		s, err := memcache.Backend{}.Open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
