package checkers

import (
	"fmt"
	"strings"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// The explainer looks, within one failing aggregate, for the execution that
// best accounts for what was observed. Candidates are the exactly-once serial
// orders that respect real time (all of them for small partitions, the order
// of first delivery otherwise) and their single perturbations: one message
// left out (lost) or applied again, up to as many times as it was attempted
// (at most maxRepeats), at a later point (duplicate). The best candidate is
// the one that matches the most observations (the final state and each
// message's outputs); ties go to the smaller deviation from the record of
// commits, then to fewer perturbations, then to the earlier order (see
// better). Its departures from the observation become findings.

// maxPermuted bounds the partition size for which every serial order is
// tried.
const maxPermuted = 6

type candidate struct {
	seq       []string // keys in application order; a key may appear 0, 1 or 2 times
	perturbed int
}

type evaluation struct {
	state   model.State
	outputs map[string]model.Outputs // of all the applications of each key
	first   map[string]model.Outputs // of the first application of each key
	score   int
	// deviation is how far the number of applications of each message is
	// from the number of its attempts that committed; among candidates
	// that explain as much, the one closest to the record is likelier.
	deviation int
	ok        bool // the model accepted every step
}

// applyCache memoises the model's Apply over (state, logical message): the
// explainer evaluates many sequences that share prefixes.
type applyCache struct {
	m    model.Model
	memo map[applyKey]applyResult
}

type applyKey struct{ state, key string }

type applyResult struct {
	next model.State
	outs model.Outputs
	err  error
}

func newApplyCache(m model.Model) *applyCache {
	return &applyCache{m: m, memo: map[applyKey]applyResult{}}
}

func (c *applyCache) apply(s model.State, l *logical) (model.State, model.Outputs, error) {
	k := applyKey{string(s), l.Key}
	if r, ok := c.memo[k]; ok {
		return r.next, r.outs, r.err
	}
	next, outs, err := c.m.Apply(s, *l.Msg)
	c.memo[k] = applyResult{next, outs, err}
	return next, outs, err
}

func evaluate(a *analysis, c *applyCache, agg string, seq []string) evaluation {
	m := c.m
	ev := evaluation{state: m.Initial(agg), outputs: map[string]model.Outputs{}, first: map[string]model.Outputs{}, ok: true}
	for _, k := range seq {
		next, outs, err := c.apply(ev.state, a.logicals[k])
		if err != nil {
			ev.ok = false
			return ev
		}
		ev.state = next
		if _, applied := ev.outputs[k]; !applied {
			ev.first[k] = outs
		}
		ev.outputs[k] = append(ev.outputs[k], outs...)
	}
	count := map[string]int{}
	for _, k := range seq {
		count[k]++
	}
	for _, k := range a.keysOfAggregate(agg) {
		d := count[k] - a.commitsOf(k)
		ev.deviation += max(d, -d)
	}
	// A matching final state or output list scores 2. Outputs that match
	// but for extras published by attempts that never committed score 1:
	// such an execution explains them as ghosts, which is likelier than
	// a committed attempt computing wrong outputs.
	if obs, ok := a.observed[agg]; ok && obs.Equal(ev.state) {
		ev.score += 2
	}
	for _, k := range a.keysOfAggregate(agg) {
		l := a.logicals[k]
		obs := l.contents()
		if ev.outputs[k].Equal(obs) || count[k] > 1 && ev.first[k].Equal(obs) {
			// A repeated application may have published its outputs, or
			// not (it crashed, or they had the same ids).
			ev.score += 2
		} else if missing, extra := diff(ev.outputs[k], obs); len(missing) == 0 && extraUncommitted(l.Outputs, extra) {
			ev.score++
		}
	}
	return ev
}

// baseOrders returns the exactly-once serial orders to consider: the send
// order alone for an ordered model, otherwise every order that respects
// real time (the order of first delivery alone for large partitions).
func baseOrders(a *analysis, keys []string, ordered bool) [][]string {
	if ordered {
		return [][]string{keys} // keysOfAggregate lists keys in send order
	}
	if len(keys) > maxPermuted {
		return [][]string{sortedByCall(a, keys)}
	}
	var out [][]string
	var rec func(prefix []string, rest []string)
	rec = func(prefix, rest []string) {
		if len(rest) == 0 {
			out = append(out, append([]string(nil), prefix...))
			return
		}
		for i, k := range rest {
			// Real time: k may come next only if no remaining message
			// ended before k was first delivered.
			ok := true
			for j, r := range rest {
				if j != i && a.logicals[r].Return < a.logicals[k].Call {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			next := append(append([]string(nil), rest[:i]...), rest[i+1:]...)
			rec(append(prefix, k), next)
		}
	}
	rec(nil, sortedByCall(a, keys))
	return out
}

// allOrders returns every order of keys (send order kept when ordered:
// keys are in send order).
func allOrders(keys []string, ordered bool) [][]string {
	if ordered {
		return [][]string{keys}
	}
	var out [][]string
	var rec func(prefix, rest []string)
	rec = func(prefix, rest []string) {
		if len(rest) == 0 {
			out = append(out, append([]string(nil), prefix...))
			return
		}
		for i, k := range rest {
			next := append(append([]string(nil), rest[:i]...), rest[i+1:]...)
			rec(append(prefix, k), next)
		}
	}
	rec(nil, keys)
	return out
}

// againstRealTime returns the finding of an order that explains an
// aggregate's effects but breaks real time: a message placed before one
// whose attempts had all ended before it was first delivered.
func againstRealTime(a *analysis, agg string, order []string) (Finding, bool) {
	for i := 0; i < len(order); i++ {
		for j := i + 1; j < len(order); j++ {
			early, late := a.logicals[order[i]], a.logicals[order[j]]
			if late.Return < early.Call {
				return Finding{Anomaly: histories.RealTime, Aggregate: agg, Keys: []string{early.Key, late.Key},
					Text: fmt.Sprintf("%s took effect before %s, although every attempt at %s had ended (step %d) before %s was first delivered (step %d); the effects on %s match the order %s",
						early.describe(), late.describe(), late.Key, late.Return, early.Key, early.Call, agg, strings.Join(order, ", "))}, true
			}
		}
	}
	return Finding{}, false
}

func sortedByCall(a *analysis, keys []string) []string {
	out := append([]string(nil), keys...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && a.logicals[out[j]].Call < a.logicals[out[j-1]].Call; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// maxRepeats bounds how many times the explainer tries applying one message.
const maxRepeats = 4

// perturbations returns the base order, the base order with one message left
// out, and the base order with one message applied again (up to its number of
// attempts) at a later point.
func perturbations(a *analysis, base []string) []candidate {
	out := []candidate{{seq: base}}
	for i := range base {
		without := append(append([]string(nil), base[:i]...), base[i+1:]...)
		out = append(out, candidate{seq: without, perturbed: 1})
	}
	for i, k := range base {
		repeats := min(a.attemptsOf(k), maxRepeats)
		for extra := 1; extra < repeats; extra++ {
			for j := i + 1; j <= len(base); j++ {
				seq := append([]string(nil), base[:j]...)
				for range extra {
					seq = append(seq, k)
				}
				seq = append(seq, base[j:]...)
				out = append(out, candidate{seq: seq, perturbed: extra})
			}
		}
	}
	return out
}

// better reports whether candidate c (evaluated as ev) explains more than
// the best so far: more observations matched, then fewer deviations from
// the commit record, then fewer perturbations.
func better(ev evaluation, c candidate, bestEv evaluation, best candidate) bool {
	if ev.score != bestEv.score {
		return ev.score > bestEv.score
	}
	if ev.deviation != bestEv.deviation {
		return ev.deviation < bestEv.deviation
	}
	return c.perturbed < best.perturbed
}

// explainAggregate adds the findings of one failing aggregate to res.
func explainAggregate(a *analysis, m model.Model, agg string, res *Result) {
	keys := a.keysOfAggregate(agg)
	cache := newApplyCache(m)
	if m.Ordered() {
		// Would the effects be explained, each message once, if send
		// order did not matter?
		perfect := 2 * (len(keys) + 1)
		for _, order := range baseOrders(a, keys, false) {
			if ev := evaluate(a, cache, agg, order); ev.ok && ev.score == perfect {
				res.Expected = append(res.Expected, describeClosest(a, agg, keys, evaluate(a, cache, agg, keys))...)
				res.add(outOfOrder(a, agg, keys, order))
				return
			}
		}
	}
	// Would the effects be explained, each message once, if real time did
	// not matter?
	if len(keys) <= maxPermuted {
		perfect := 2 * (len(keys) + 1)
		for _, order := range allOrders(keys, m.Ordered()) {
			if ev := evaluate(a, cache, agg, order); ev.ok && ev.score == perfect {
				if f, ok := againstRealTime(a, agg, order); ok {
					res.Expected = append(res.Expected, describeClosest(a, agg, order, ev)...)
					res.add(f)
					return
				}
			}
		}
	}
	var (
		best     candidate
		bestEval evaluation
		found    bool
		closest  []string // best exactly-once order
		closeEv  evaluation
	)
	bases := baseOrders(a, keys, m.Ordered())
	perfect := 2 * (len(keys) + 1)
	perfectBase := false // some exactly-once order explains everything
	for _, base := range bases {
		ev := evaluate(a, cache, agg, base)
		if !ev.ok {
			continue
		}
		if closest == nil || ev.score > closeEv.score {
			closest, closeEv = base, ev
		}
		perfectBase = perfectBase || ev.score == perfect && ev.deviation == 0
	}
	// Candidates in order (each base, then its perturbations); the first
	// best wins ties. Nothing beats a candidate that explains everything
	// with no deviation and the fewest perturbations any remaining
	// candidate can have, so the search stops there.
search:
	for _, base := range bases {
		for _, c := range perturbations(a, base) {
			ev := evaluate(a, cache, agg, c.seq)
			if !ev.ok {
				continue
			}
			if !found || better(ev, c, bestEval, best) {
				best, bestEval, found = c, ev, true
				if ev.score == perfect && ev.deviation == 0 && (c.perturbed == 0 || c.perturbed == 1 && !perfectBase) {
					break search
				}
			}
		}
	}
	if !found {
		res.add(Finding{Anomaly: histories.Inconsistent, Aggregate: agg, Keys: keys,
			Text: fmt.Sprintf("no execution of the model accepts the messages of %s", agg)})
		return
	}

	if closest != nil {
		res.Expected = append(res.Expected, describeClosest(a, agg, closest, closeEv)...)
	}
	count := map[string]int{}
	for _, k := range best.seq {
		count[k]++
	}
	explained := false
	for _, k := range keys {
		l := a.logicals[k]
		obs := l.contents()
		exp := bestEval.outputs[k]
		switch {
		case count[k] == 0:
			if len(obs) > 0 && allUncommitted(l.Outputs) {
				res.add(Finding{Anomaly: histories.Ghost, Aggregate: agg, Keys: []string{k},
					Text: fmt.Sprintf("%s published %s from an attempt that never committed, and its state change is not in the final state", l.describe(), obs)})
			} else {
				f := Finding{Anomaly: histories.Lost, Aggregate: agg, Keys: []string{k}}
				switch once := closeEv.outputs[k]; {
				case len(obs) == 0 && len(once) > 0:
					f.Text = fmt.Sprintf("%s had no effect at all: neither its state change nor its outputs %s were observed", l.describe(), once)
				case len(obs) == 0:
					f.Text = fmt.Sprintf("%s had no effect at all on the final state of %s", l.describe(), agg)
				default:
					f.Text = fmt.Sprintf("%s published %s, but its state change is missing from the final state of %s", l.describe(), obs, agg)
				}
				res.add(f)
			}
			explained = true
		case count[k] > 1:
			res.add(Finding{Anomaly: histories.Duplicate, Aggregate: agg, Keys: []string{k},
				Text: fmt.Sprintf("%s was applied %s: the final state and outputs match an execution that applies it %s (observed outputs %s)", l.describe(), times(count[k]), times(count[k]), obs)})
			explained = true
		case !exp.Equal(obs):
			missing, extra := diff(exp, obs)
			f := Finding{Aggregate: agg, Keys: []string{k}}
			switch {
			case len(missing) == 0 && subset(extra, exp):
				f.Anomaly = histories.Duplicate
				f.Text = fmt.Sprintf("%s published %s again with a new message id", l.describe(), extra)
			case len(extra) > 0 && extraUncommitted(l.Outputs, extra):
				f.Anomaly = histories.Ghost
				f.Text = fmt.Sprintf("%s published %s from an attempt that never committed; no exactly-once execution publishes it", l.describe(), extra)
			case len(extra) == 0:
				f.Anomaly = histories.Lost
				f.Text = fmt.Sprintf("%s never published %s (published %s)", l.describe(), missing, obs)
			default:
				f.Anomaly = histories.Inconsistent
				f.Text = fmt.Sprintf("%s published %s where an exactly-once execution publishes %s", l.describe(), obs, exp)
			}
			res.add(f)
			explained = true
		}
	}
	if obs := a.observed[agg]; !obs.Equal(bestEval.state) {
		res.add(Finding{Anomaly: histories.Inconsistent, Aggregate: agg, Keys: keys,
			Text: fmt.Sprintf("final state of %s is %s; the closest execution ends in %s", agg, obs, bestEval.state)})
		explained = true
	}
	if !explained {
		res.add(Finding{Anomaly: histories.Inconsistent, Aggregate: agg, Keys: keys,
			Text: fmt.Sprintf("the effects on %s match no serial order that respects real time", agg)})
	}
}

// describeClosest renders the closest exactly-once execution: each message
// in order with its expected and observed outputs, the final state, and
// where the observation first departs from it.
func describeClosest(a *analysis, agg string, order []string, ev evaluation) []string {
	lines := []string{fmt.Sprintf("%s: closest exactly-once order %s", agg, strings.Join(order, ", "))}
	first := ""
	for _, k := range order {
		obs := a.logicals[k].contents()
		mark := "ok"
		if !ev.outputs[k].Equal(obs) {
			mark = "DIFFERS"
			if first == "" {
				first = fmt.Sprintf("the outputs of %s", a.logicals[k].describe())
			}
		}
		lines = append(lines, fmt.Sprintf("  %s %s: expected %s, observed %s [%s]", k, a.logicals[k].Msg.Output(), ev.outputs[k], obs, mark))
	}
	obs := a.observed[agg]
	mark := "ok"
	if !obs.Equal(ev.state) {
		mark = "DIFFERS"
		if first == "" {
			first = "the final state of " + agg
		}
	}
	lines = append(lines, fmt.Sprintf("  final state: expected %s, observed %s [%s]", ev.state, obs, mark))
	if first != "" {
		lines = append(lines, "  the observation first departs from it at "+first)
	} else {
		lines = append(lines, "  the observation matches it, but real time or send order forbids it")
	}
	return lines
}

// diff returns exp minus obs and obs minus exp, as multisets.
func diff(exp, obs model.Outputs) (missing, extra model.Outputs) {
	left := map[string]int{}
	for _, o := range obs {
		left[o.String()]++
	}
	for _, o := range exp {
		if left[o.String()] > 0 {
			left[o.String()]--
		} else {
			missing = append(missing, o)
		}
	}
	for _, o := range obs {
		if left[o.String()] > 0 {
			left[o.String()]--
			extra = append(extra, o)
		}
	}
	return missing, extra
}

func subset(xs, of model.Outputs) bool {
	for _, x := range xs {
		found := false
		for _, o := range of {
			if o.String() == x.String() {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func allUncommitted(outs []*output) bool {
	for _, o := range outs {
		if !o.Ghostly {
			return false
		}
	}
	return len(outs) > 0
}

// extraUncommitted reports whether every extra output was published by an
// attempt that never committed.
func extraUncommitted(outs []*output, extra model.Outputs) bool {
	for _, x := range extra {
		found := false
		for _, o := range outs {
			if o.Content.String() == x.String() && o.Ghostly {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func times(n int) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}

// outOfOrder explains an ordered aggregate whose effects match order but not
// the send order keys.
func outOfOrder(a *analysis, agg string, sent, applied []string) Finding {
	rank := map[string]int{}
	for i, k := range applied {
		rank[k] = i
	}
	for i := 0; i < len(sent); i++ {
		for j := i + 1; j < len(sent); j++ {
			if rank[sent[j]] < rank[sent[i]] {
				first, second := a.logicals[sent[i]], a.logicals[sent[j]]
				return Finding{Anomaly: histories.OutOfOrder, Aggregate: agg, Keys: []string{second.Key, first.Key},
					Text: fmt.Sprintf("%s took effect before %s, which was sent before it; the effects on %s match the order %s",
						second.describe(), first.describe(), agg, strings.Join(applied, ", "))}
			}
		}
	}
	return Finding{Anomaly: histories.OutOfOrder, Aggregate: agg, Keys: sent,
		Text: fmt.Sprintf("the effects on %s match the order %s, which breaks real time", agg, strings.Join(applied, ", "))}
}
