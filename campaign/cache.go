package campaign

import (
	"errors"
	"fmt"
	"sync"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/sim"
)

// cachePool holds the cache stores of a tester's cache backend that no run
// is using, as storePool does for the stores. Without a backend (the
// in-memory cache) each run makes its own.
type cachePool struct {
	backend adapters.CacheBackend // nil: the simulation's in-memory cache
	mu      sync.Mutex
	free    []adapters.CacheStore
	all     []adapters.CacheStore
}

// take returns an empty store, or nil for the in-memory cache.
func (p *cachePool) take() (adapters.CacheStore, error) {
	if p.backend == nil {
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var s adapters.CacheStore
	if n := len(p.free); n > 0 {
		s, p.free = p.free[n-1], p.free[:n-1]
	} else {
		var err error
		if s, err = p.backend.Open(); err != nil {
			return nil, fmt.Errorf("open the %s cache: %w", p.backend.Name(), err)
		}
		p.all = append(p.all, s)
	}
	if err := s.Reset(); err != nil {
		p.free = append(p.free, s)
		return nil, fmt.Errorf("%w: empty the %s cache: %v", sim.ErrInfrastructure, p.backend.Name(), err)
	}
	return s, nil
}

func (p *cachePool) put(s adapters.CacheStore) {
	if s == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, s)
}

func (p *cachePool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, s := range p.all {
		errs = append(errs, s.Close())
	}
	p.all, p.free = nil, nil
	return errors.Join(errs...)
}

// cacheName is the name a history gives the cache backend: empty for the
// in-memory one (absent from the header, as in histories before 1.3).
func cacheName(b adapters.CacheBackend) string {
	if b == nil || b.Name() == "mem" {
		return ""
	}
	return b.Name()
}
