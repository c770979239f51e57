package sim

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

// cache is the adapters.Cache of one attempt or pass: each command is a
// crash point before and after it (faults.BeforeCache, faults.AfterCache,
// indexed by the attempt's cache commands), a scheduling point, and a
// "cache" event; it runs on the run's cache store at the run's time.
type cache struct{ e *env }

var _ adapters.Cache = cache{}

// Cache implements adapters.Env.
func (e *env) Cache() adapters.Cache { return cache{e} }

// Now implements adapters.Env.
func (e *env) Now() (t time.Time) {
	e.r.harness(func() { t = e.r.now() })
	return t
}

// RunID implements adapters.Env.
func (e *env) RunID() string { return e.r.runID }

// do runs one command: what names it for the history, f runs it and says
// what it answered.
func (c cache) do(what string, f func(adapters.Cache) (string, error)) error {
	e := c.e
	var (
		n   int
		now time.Time
	)
	e.r.harness(func() {
		n = e.cacheCommands
		e.cacheCommands++
		e.boundary(faults.BeforeCache, n)
		now = e.r.now()
	})
	answer, err := f(e.r.cache.At(now))
	e.r.harness(func() {
		if errors.Is(err, adapters.ErrBackend) {
			e.backendFailed(err)
		}
		ev := e.base(histories.CacheCmd)
		if err != nil {
			answer = "error: " + err.Error()
		}
		ev.Detail = what + ": " + answer
		e.r.record(ev)
		e.boundary(faults.AfterCache, n)
	})
	return err
}

func ttlText(ttl time.Duration) string {
	if ttl <= 0 {
		return ""
	}
	return " PX " + ttl.String()
}

func (c cache) SetNX(key, value string, ttl time.Duration) (set bool, err error) {
	err = c.do(fmt.Sprintf("SET %s %q NX%s", key, value, ttlText(ttl)), func(x adapters.Cache) (string, error) {
		var err error
		set, err = x.SetNX(key, value, ttl)
		if set {
			return "OK", err
		}
		return "not set, the key exists", err
	})
	return set, err
}

func (c cache) Set(key, value string, ttl time.Duration) error {
	return c.do(fmt.Sprintf("SET %s %q%s", key, value, ttlText(ttl)), func(x adapters.Cache) (string, error) {
		return "OK", x.Set(key, value, ttl)
	})
}

func (c cache) Get(key string) (value string, ok bool, err error) {
	err = c.do("GET "+key, func(x adapters.Cache) (string, error) {
		var err error
		value, ok, err = x.Get(key)
		if !ok {
			return "(nil)", err
		}
		return strconv.Quote(value), err
	})
	return value, ok, err
}

func (c cache) Del(key string) (deleted bool, err error) {
	err = c.do("DEL "+key, func(x adapters.Cache) (string, error) {
		var err error
		deleted, err = x.Del(key)
		return strconv.FormatBool(deleted), err
	})
	return deleted, err
}

func (c cache) Incr(key string) (n int64, err error) {
	err = c.do("INCR "+key, func(x adapters.Cache) (string, error) {
		var err error
		n, err = x.Incr(key)
		return strconv.FormatInt(n, 10), err
	})
	return n, err
}

func (c cache) Expire(key string, ttl time.Duration) (ok bool, err error) {
	what := "PERSIST " + key
	if ttl > 0 {
		what = "EXPIRE " + key + " " + ttl.String()
	}
	err = c.do(what, func(x adapters.Cache) (string, error) {
		var err error
		ok, err = x.Expire(key, ttl)
		return strconv.FormatBool(ok), err
	})
	return ok, err
}
