// Package waitsfor is the waits-for graph of a store's lock waits and its
// deadlock rule: when a wait closes a cycle, the transaction of the cycle
// that began waiting first is the victim, as on PostgreSQL, whose waiter
// runs the deadlock check when its deadlock_timeout expires (the earliest
// waiter's expires first).
package waitsfor

// Graph records which transaction waits for which. T is a transaction's
// identity (a pointer). The zero value is empty and ready; a Graph is not
// safe for concurrent use.
type Graph[T comparable] struct {
	edges map[T]edge[T]
	seq   uint64
}

type edge[T comparable] struct {
	holder T
	seq    uint64 // when the wait began
}

// Wait records that waiter waits for holder (a waiter that waited already
// keeps its place: it began waiting then). If that closes a cycle, it
// returns the victim (the member of the cycle that began waiting first,
// whose edge it removes) and true.
func (g *Graph[T]) Wait(waiter, holder T) (victim T, deadlock bool) {
	if g.edges == nil {
		g.edges = map[T]edge[T]{}
	}
	e, ok := g.edges[waiter]
	if !ok {
		g.seq++
		e.seq = g.seq
	}
	e.holder = holder
	g.edges[waiter] = e
	victim, first := waiter, e.seq
	for at, steps := holder, 0; steps <= len(g.edges); steps++ {
		e, ok := g.edges[at]
		if !ok {
			return victim, false // the chain ends at a transaction that runs
		}
		if e.seq < first {
			victim, first = at, e.seq
		}
		if e.holder == waiter {
			delete(g.edges, victim)
			return victim, true
		}
		at = e.holder
	}
	return victim, false // a cycle that does not pass through waiter: not ours to break
}

// Done removes waiter's wait, if any.
func (g *Graph[T]) Done(waiter T) { delete(g.edges, waiter) }

// Holder returns what waiter waits for.
func (g *Graph[T]) Holder(waiter T) (T, bool) {
	e, ok := g.edges[waiter]
	return e.holder, ok
}

// Waiters returns the transactions that wait for holder, in the order
// they began waiting.
func (g *Graph[T]) Waiters(holder T) []T {
	return g.waiters(func(h T) bool { return h == holder })
}

// All returns every waiting transaction, in the order they began waiting.
func (g *Graph[T]) All() []T { return g.waiters(func(T) bool { return true }) }

func (g *Graph[T]) waiters(match func(holder T) bool) []T {
	type w struct {
		t   T
		seq uint64
	}
	var ws []w
	for t, e := range g.edges {
		if match(e.holder) {
			ws = append(ws, w{t, e.seq})
		}
	}
	// Insertion sort: a handful of waiters at most; no map order leaks.
	for i := 1; i < len(ws); i++ {
		for j := i; j > 0 && ws[j].seq < ws[j-1].seq; j-- {
			ws[j], ws[j-1] = ws[j-1], ws[j]
		}
	}
	out := make([]T, len(ws))
	for i, x := range ws {
		out[i] = x.t
	}
	return out
}

// Reset empties the graph.
func (g *Graph[T]) Reset() { g.edges, g.seq = nil, 0 }
