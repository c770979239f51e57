package model

import "fmt"

// Enumerator is implemented by models that can list every small workload
// "shape" for the exhaustive mode: every workload of 1 to maxMessages
// messages, up to renaming (aggregates, SKUs and names are numbered in
// order of first use, so two workloads that differ only by names are listed
// once) and with values reduced to the few that change behaviour.
type Enumerator interface {
	Shapes(maxMessages int) []Workload
}

// shapes enumerates workloads of 1..max messages, in increasing size. For
// each message, next lists its possible contents given how many aggregates
// and symbols (SKUs, names) earlier messages used; each option says whether
// it opens a new aggregate (agg == used) and how many symbols are in use
// after it.
func shapes(max int, next func(aggsUsed, symbolsUsed int, firstOfAggregate bool) []shapeOption) []Workload {
	var out []Workload
	var rec func(w Workload, aggs, symbols int, seen map[int]bool, size int)
	rec = func(w Workload, aggs, symbols int, seen map[int]bool, size int) {
		if len(w) == size {
			out = append(out, Workload(append([]Message(nil), w...)).Number())
			return
		}
		for agg := 0; agg <= aggs; agg++ {
			for _, o := range next(aggs, symbols, !seen[agg]) {
				m := o.msg
				m.Aggregate = fmt.Sprintf("%s%d", o.prefix, agg+1)
				was := seen[agg]
				seen[agg] = true
				rec(append(w, m), max0(aggs, agg+1), o.symbols, seen, size)
				seen[agg] = was
			}
		}
	}
	for size := 1; size <= max; size++ {
		rec(nil, 0, 0, map[int]bool{}, size)
	}
	return out
}

type shapeOption struct {
	prefix  string
	msg     Message
	symbols int
}

func max0(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Shapes implements Enumerator: AddItem (quantity 1), RemoveItem and Confirm
// over orders and SKUs numbered in order of first use.
func (Orders) Shapes(maxMessages int) []Workload {
	skus := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	return shapes(maxMessages, func(_, used int, _ bool) []shapeOption {
		var opts []shapeOption
		for s := 0; s <= used && s < len(skus); s++ {
			after := max0(used, s+1)
			opts = append(opts,
				shapeOption{"o", Message{Type: AddItem, Payload: payload(itemPayload{SKU: skus[s], Qty: 1})}, after},
				shapeOption{"o", Message{Type: RemoveItem, Payload: payload(itemPayload{SKU: skus[s]})}, after})
		}
		return append(opts, shapeOption{"o", Message{Type: Confirm, Payload: payload(struct{}{})}, used})
	})
}

// Shapes implements Enumerator: deposits of 1 and withdrawals of 1 and 2
// (one that a deposit covers, one that it does not) over accounts numbered
// in order of first use.
func (Accounts) Shapes(maxMessages int) []Workload {
	return shapes(maxMessages, func(_, used int, _ bool) []shapeOption {
		return []shapeOption{
			{"a", Message{Type: Deposit, Payload: payload(amountPayload{Amount: 1})}, used},
			{"a", Message{Type: Withdraw, Payload: payload(amountPayload{Amount: 1})}, used},
			{"a", Message{Type: Withdraw, Payload: payload(amountPayload{Amount: 2})}, used},
		}
	})
}

// Shapes implements Enumerator: each user's first event is UserCreated, the
// others UserRenamed, with names numbered in order of first use.
func (Profiles) Shapes(maxMessages int) []Workload {
	names := []string{"ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal"}
	return shapes(maxMessages, func(_, used int, first bool) []shapeOption {
		typ := UserRenamed
		if first {
			typ = UserCreated
		}
		var opts []shapeOption
		for n := 0; n <= used && n < len(names); n++ {
			opts = append(opts, shapeOption{"u", Message{Type: typ, Payload: payload(namePayload{Name: names[n]})}, max0(used, n+1)})
		}
		return opts
	})
}
