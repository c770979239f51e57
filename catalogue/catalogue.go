// Package catalogue resolves the names that histories and command lines
// use (a model, a strategy, a backend) to values. A Catalogue is a plain
// value: nothing is registered anywhere, so campaigns, checks and replays
// that run at once, each with its own catalogue, share nothing.
package catalogue

import (
	"fmt"
	"slices"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/ackfirst"
	"github.com/oncecheck/oncecheck/adapters/brokerwindow"
	"github.com/oncecheck/oncecheck/adapters/dedup"
	"github.com/oncecheck/oncecheck/adapters/dedupmarkfirst"
	"github.com/oncecheck/oncecheck/adapters/dedupmarklast"
	"github.com/oncecheck/oncecheck/adapters/dedupmemory"
	"github.com/oncecheck/oncecheck/adapters/deduprepublish"
	"github.com/oncecheck/oncecheck/adapters/memcache"
	"github.com/oncecheck/oncecheck/adapters/memstore"
	"github.com/oncecheck/oncecheck/adapters/naive"
	"github.com/oncecheck/oncecheck/adapters/outbox"
	"github.com/oncecheck/oncecheck/adapters/publishfirst"
	"github.com/oncecheck/oncecheck/adapters/redissetnx"
	"github.com/oncecheck/oncecheck/adapters/redissetnxafter"
	"github.com/oncecheck/oncecheck/adapters/redissetnxrelease"
	"github.com/oncecheck/oncecheck/adapters/reservation"
	"github.com/oncecheck/oncecheck/adapters/sequence"
	"github.com/oncecheck/oncecheck/adapters/statebased"
	"github.com/oncecheck/oncecheck/adapters/version"
	"github.com/oncecheck/oncecheck/model"
)

// Catalogue is a set of models, strategies and backends, each known by its
// name. A lookup returns the first entry of the name; the With methods
// replace an entry of the same name in place rather than add a second.
type Catalogue struct {
	Models     []model.Model
	Strategies []adapters.Strategy
	Backends   []adapters.Backend
	// Caches are the backends of Env.Cache, by name ("mem", "redis").
	Caches []adapters.CacheBackend
}

// Builtin returns the built-in models (orders, accounts, profiles), the
// 17 built-in strategies in the order of docs/design.md, and the in-memory
// backend and cache. The pg backend and the Redis cache are not in it, so
// that a program that does not use them does not link their drivers: add
// pgstore.Backend with WithBackends, rediscache.Backend with
// WithCaches.
func Builtin() Catalogue {
	return Catalogue{
		Models: []model.Model{model.Orders{}, model.Accounts{}, model.Profiles{}},
		Strategies: []adapters.Strategy{
			naive.Strategy(), ackfirst.Strategy(), publishfirst.Strategy(), dedup.Strategy(),
			deduprepublish.Strategy(), dedupmarkfirst.Strategy(), dedupmarklast.Strategy(),
			dedupmemory.Strategy(), outbox.Strategy(), sequence.Strategy(), version.Strategy(),
			statebased.Strategy(), reservation.Strategy(),
			redissetnx.Strategy(), redissetnxafter.Strategy(), redissetnxrelease.Strategy(), brokerwindow.Strategy(),
		},
		Backends: []adapters.Backend{memstore.Backend{}},
		Caches:   []adapters.CacheBackend{memcache.Backend{}},
	}
}

// WithModels returns a copy of c with the models added; a model whose name
// c has replaces c's.
func (c Catalogue) WithModels(ms ...model.Model) Catalogue {
	c.Models = with(c.Models, ms, model.Model.Name)
	return c
}

// WithStrategies returns a copy of c with the strategies added; a strategy
// whose name c has replaces c's.
func (c Catalogue) WithStrategies(ss ...adapters.Strategy) Catalogue {
	c.Strategies = with(c.Strategies, ss, func(s adapters.Strategy) string { return s.Name })
	return c
}

// WithBackends returns a copy of c with the backends added; a backend whose
// name c has replaces c's.
func (c Catalogue) WithBackends(bs ...adapters.Backend) Catalogue {
	c.Backends = with(c.Backends, bs, adapters.Backend.Name)
	return c
}

func with[T any](have, add []T, name func(T) string) []T {
	out := slices.Clone(have)
	for _, a := range add {
		i := slices.IndexFunc(out, func(h T) bool { return name(h) == name(a) })
		if i >= 0 {
			out[i] = a
		} else {
			out = append(out, a)
		}
	}
	return out
}

// WithCaches returns a copy of c with the cache backends added; one whose
// name c has replaces c's.
func (c Catalogue) WithCaches(bs ...adapters.CacheBackend) Catalogue {
	c.Caches = with(c.Caches, bs, adapters.CacheBackend.Name)
	return c
}

// Cache returns the cache backend called name ("" is "mem"), or an
// *UnknownError.
func (c Catalogue) Cache(name string) (adapters.CacheBackend, error) {
	if name == "" {
		name = "mem"
	}
	return find(c.Caches, "cache", name, adapters.CacheBackend.Name)
}

// CacheNames returns the cache backends' names, in the catalogue's order.
func (c Catalogue) CacheNames() []string { return names(c.Caches, adapters.CacheBackend.Name) }

// Model returns the model called name, or an *UnknownError.
func (c Catalogue) Model(name string) (model.Model, error) {
	return find(c.Models, "model", name, model.Model.Name)
}

// Strategy returns the strategy called name, or an *UnknownError.
func (c Catalogue) Strategy(name string) (adapters.Strategy, error) {
	return find(c.Strategies, "strategy", name, func(s adapters.Strategy) string { return s.Name })
}

// Backend returns the backend called name, or an *UnknownError.
func (c Catalogue) Backend(name string) (adapters.Backend, error) {
	return find(c.Backends, "backend", name, adapters.Backend.Name)
}

// ModelNames returns the models' names, in the catalogue's order.
func (c Catalogue) ModelNames() []string { return names(c.Models, model.Model.Name) }

// StrategyNames returns the strategies' names, in the catalogue's order.
func (c Catalogue) StrategyNames() []string {
	return names(c.Strategies, func(s adapters.Strategy) string { return s.Name })
}

// BackendNames returns the backends' names, in the catalogue's order.
func (c Catalogue) BackendNames() []string { return names(c.Backends, adapters.Backend.Name) }

func find[T any](items []T, kind, n string, name func(T) string) (T, error) {
	for _, it := range items {
		if name(it) == n {
			return it, nil
		}
	}
	var zero T
	return zero, &UnknownError{Kind: kind, Name: n, Known: names(items, name)}
}

func names[T any](items []T, name func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = name(it)
	}
	return out
}

// UnknownError is a name that a catalogue does not know.
type UnknownError struct {
	// Kind is "model", "strategy", "backend" or "cache".
	Kind string
	// Name is the name looked up.
	Name string
	// Known are the names the catalogue has of that kind.
	Known []string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("unknown %s %q (known: %v)", e.Kind, e.Name, e.Known)
}
