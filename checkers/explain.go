package checkers

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// The explainer finds, within one failing aggregate, the simplest
// explanation of what was observed: an execution of the model that
// reproduces the observed final state and every message's published
// outputs with the fewest deviations from exactly-once
// (docs/history-format.md, "How a violation is explained"). An execution
// is a sequence of applications of the aggregate's messages; the
// deviations, each counting one, are:
//
//   - a message left out (no application at all): lost;
//   - each application of a message beyond its first: duplicate;
//   - an application whose outputs were published, all or some, but whose
//     state change is missing (a phantom): ghost when the message has an output published by
//     an attempt that wrote and never committed, else lost (the message has
//     no other application) or duplicate (it has);
//   - a message's outputs not all published: lost;
//   - a message's outputs published again under a new id: duplicate;
//   - the first applications in an order against send order (ordered
//     models), or against the order of the aggregate's published outputs
//     (Options.OutputOrder): out-of-order;
//   - the first applications in an order against real time: real-time.
//
// A message is applied (phantoms included) at most as many times as its
// copies were delivered, and at least once when it published. The search
// deepens one deviation at a time up to maxDeviations, over every order of
// the messages, trying first the order in which they took effect (commits,
// then ends of attempts); among the explanations of the fewest deviations
// it picks the one with the fewest distinct anomaly names, then the
// earliest in simplestFirst, then the one that explains the most lost
// updates (lostupdate.go) as such, leaving out the overwritten change and
// applying the overwriting one, then the fewest the other way round. A
// search that reaches its budget reports the
// simplest explanation it found, or says that it found none.

// maxDeviations bounds the deviations of an explanation.
const maxDeviations = 3

// searchBudget bounds the nodes of the explainer's search per aggregate.
const searchBudget = 300_000

// exactMessages is the aggregate size up to which the search is exact
// (no pruning of revisited nodes).
const exactMessages = 8

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
	bag  bag // the outputs as a multiset
	err  error
}

func newApplyCache(m model.Model) *applyCache {
	return &applyCache{m: m, memo: map[applyKey]applyResult{}}
}

func (c *applyCache) apply(s model.State, l *logical) applyResult {
	k := applyKey{string(s), l.Key}
	if r, ok := c.memo[k]; ok {
		return r
	}
	next, outs, err := c.m.Apply(s, *l.Msg)
	r := applyResult{next: next, outs: outs, err: err}
	if err == nil {
		r.bag = bagOf(outs)
	}
	c.memo[k] = r
	return r
}

// bag is a multiset of outputs: their canonical texts, sorted.
type bag []string

func bagOf(outs model.Outputs) bag {
	b := make(bag, 0, len(outs))
	for _, o := range outs {
		if p, err := model.Canonical(o.Payload); err == nil {
			o.Payload = p
		}
		b = append(b, o.String())
	}
	slices.Sort(b)
	return b
}

// sum is the multiset sum, union the multiset union (the larger count of
// each element).
func (b bag) sum(o bag) bag {
	out := append(append(bag(nil), b...), o...)
	slices.Sort(out)
	return out
}

func (b bag) union(o bag) bag {
	var out bag
	i, j := 0, 0
	for i < len(b) || j < len(o) {
		switch {
		case j == len(o) || i < len(b) && b[i] < o[j]:
			out = append(out, b[i])
			i++
		case i == len(b) || o[j] < b[i]:
			out = append(out, o[j])
			j++
		default:
			out = append(out, b[i])
			i, j = i+1, j+1
		}
	}
	return out
}

// within reports whether b is included in o, as multisets.
func (b bag) within(o bag) bool {
	j := 0
	for _, x := range b {
		for j < len(o) && o[j] < x {
			j++
		}
		if j == len(o) || o[j] != x {
			return false
		}
		j++
	}
	return true
}

// minus returns b without the elements of o (as multisets).
func (b bag) minus(o bag) bag {
	var out bag
	j := 0
	for _, x := range b {
		for j < len(o) && o[j] < x {
			j++
		}
		if j < len(o) && o[j] == x {
			j++
			continue
		}
		out = append(out, x)
	}
	return out
}

func (b bag) String() string { return "[" + strings.Join(b, ", ") + "]" }

// outcome says how a message's observed outputs relate to its applications.
type outcome int

const (
	outMatched     outcome = iota // published as some applications produce them
	outLost                       // some of them never published
	outRepublished                // some published again under a new id
)

// keyPlan is how an explanation accounts for one message.
type keyPlan struct {
	phantom   bool
	phantomAt int // index in the trail of the state the phantom saw
	outcome   outcome
	missing   bag  // outLost: what was never published
	extra     bag  // outRepublished: the copies under new ids
	names     uint // the anomaly names of its deviations (nameBit)
}

// explanation is a solution of the search.
type explanation struct {
	cost  int
	names uint
	// lost updates (explainer.lu) it explains as such, and the wrong way
	// round (lostUpdates)
	overwrote, kept int
	seq             []int // effective applications (key indexes), in order
	first           []int // keys in the order of their first application
	trail           []model.State
	rt              bool // the first applications break real time
	send            bool // ... send order
	out             bool // ... the order of published outputs
	plans           []keyPlan
}

// explainer is the search for one aggregate.
type explainer struct {
	a        *analysis
	agg      string
	cache    *applyCache
	ks       []*logical // in send order
	obs      []bag      // observed outputs of each message
	ghostly  []bool     // an output of the message came from an uncommitted attempt
	maxApps  []int
	free     []bool // pending in a stuck run: leaving it out costs nothing
	minPub   []int  // first publication steps (0: published nothing)
	maxPub   []int
	ordered  bool
	outOrder bool
	observed model.State
	prefer   []int // key indexes, in the order they took effect
	// overwrites are the aggregate's lost updates, lu the same as
	// (overwriting, overwritten) key indexes.
	overwrites []overwrite
	lu         [][2]int

	nodes     int
	exhausted bool
	exact     bool
	seen      map[string]int // inexact search: node -> lowest bound seen

	// the current sequence
	level    int
	count    []int
	mis      []bool
	apps     [][]bag
	seq      []int
	first    []int
	trail    []model.State
	maxCall  int
	maxPos   int64
	maxPubAt int
	rt, send bool
	out      bool
	lb       int

	best *explanation
}

func newExplainer(a *analysis, m model.Model, agg string, outOrder bool) (*explainer, error) {
	ls := a.perAgg[agg]
	n := len(ls)
	e := &explainer{a: a, agg: agg, cache: newApplyCache(m), ks: ls, ordered: m.Ordered(), outOrder: outOrder,
		observed: a.observed[agg], exact: n <= exactMessages,
		obs: make([]bag, n), ghostly: make([]bool, n), maxApps: make([]int, n), free: make([]bool, n),
		minPub: make([]int, n), maxPub: make([]int, n), count: make([]int, n), mis: make([]bool, n), apps: make([][]bag, n)}
	for i, l := range ls {
		e.obs[i] = bagOf(l.contents())
		e.maxApps[i] = max(1, l.attempts)
		e.free[i] = len(a.stuck) > 0 && !l.finished
		for _, o := range l.Outputs {
			e.ghostly[i] = e.ghostly[i] || o.Ghostly
			if e.minPub[i] == 0 || o.Step < e.minPub[i] {
				e.minPub[i] = o.Step
			}
			e.maxPub[i] = max(e.maxPub[i], o.Step)
		}
		e.prefer = append(e.prefer, i)
	}
	slices.SortStableFunc(e.prefer, func(x, y int) int {
		if d := ls[x].effect() - ls[y].effect(); d != 0 {
			return d
		}
		return ls[x].Call - ls[y].Call
	})
	if !e.exact {
		e.seen = map[string]int{}
	}
	committed := 0
	for _, l := range ls {
		committed += b2i(l.commits > 0)
	}
	if committed >= 2 {
		ws, err := a.overwrites(agg)
		if err != nil {
			return nil, err
		}
		e.overwrites = ws
		for _, w := range ws {
			p := [2]int{slices.Index(ls, w.over.l), slices.Index(ls, w.under.l)}
			if !slices.Contains(e.lu, p) {
				e.lu = append(e.lu, p)
			}
		}
	}
	return e, nil
}

// lostUpdates counts the lost updates that the current sequence explains
// as such, leaving out the overwritten message and applying the
// overwriting one, and those it explains the wrong way round.
func (e *explainer) lostUpdates() (overwrote, kept int) {
	for _, p := range e.lu {
		over, under := e.count[p[0]] > 0, e.count[p[1]] > 0
		overwrote += b2i(over && !under)
		kept += b2i(!over && under)
	}
	return overwrote, kept
}

// search runs the deepening search; it returns the simplest explanation
// found (nil if none) and whether the search was complete.
func (e *explainer) search() (*explanation, bool) {
	for level := 0; level <= maxDeviations; level++ {
		e.level = level
		clear(e.seen)
		e.trail = append(e.trail[:0], e.cache.m.Initial(e.agg))
		e.dfs()
		if e.best != nil || e.exhausted {
			return e.best, !e.exhausted
		}
	}
	return nil, true
}

func (e *explainer) dfs() {
	e.nodes++
	if e.nodes > searchBudget {
		e.exhausted = true
		return
	}
	if e.best != nil && e.best.names == 1 && e.best.overwrote == len(e.lu) {
		return // nothing beats a lone first name
	}
	state := e.trail[len(e.trail)-1]
	if !e.exact {
		key := fmt.Sprint(e.count, e.rt, e.send, e.out, e.mis) + string(state)
		if lb, ok := e.seen[key]; ok && lb <= e.lb {
			return
		}
		e.seen[key] = e.lb
	}
	if state.Equal(e.observed) {
		e.leaf()
	}
	for _, k := range e.prefer {
		if e.exhausted {
			return
		}
		l := e.ks[k]
		if e.count[k] >= e.maxApps[k] {
			continue
		}
		r := e.cache.apply(state, l)
		if r.err != nil {
			continue
		}
		if e.count[k] == 0 {
			rt := e.rt || len(e.first) > 0 && l.Return < e.maxCall
			send := e.send || e.ordered && len(e.first) > 0 && l.Msg.Position <= e.maxPos
			out := e.out || e.outOrder && e.minPub[k] != 0 && e.minPub[k] < e.maxPubAt
			mis := !slices.Equal(r.bag, e.obs[k])
			lb := e.lb + b2i(rt && !e.rt) + b2i(send && !e.send) + b2i(out && !e.out) + b2i(mis)
			if lb > e.level {
				continue
			}
			saved := [...]int{e.maxCall, e.maxPubAt, e.lb}
			savedPos, savedFlags := e.maxPos, [3]bool{e.rt, e.send, e.out}
			e.rt, e.send, e.out, e.lb = rt, send, out, lb
			e.maxCall = max(e.maxCall, l.Call)
			e.maxPos = max(e.maxPos, l.Msg.Position)
			e.maxPubAt = max(e.maxPubAt, e.maxPub[k])
			e.mis[k] = mis
			e.push(k, r)
			e.first = append(e.first, k)
			e.dfs()
			e.first = e.first[:len(e.first)-1]
			e.pop(k)
			e.mis[k] = false
			e.maxCall, e.maxPubAt, e.lb = saved[0], saved[1], saved[2]
			e.maxPos = savedPos
			e.rt, e.send, e.out = savedFlags[0], savedFlags[1], savedFlags[2]
			continue
		}
		// Applied again: one more deviation, unless a mismatch of its
		// first outputs already counted one.
		inc := 1
		if e.count[k] == 1 && e.mis[k] {
			inc = 0
		}
		if e.lb+inc > e.level {
			continue
		}
		e.lb += inc
		e.push(k, r)
		e.dfs()
		e.pop(k)
		e.lb -= inc
	}
}

func (e *explainer) push(k int, r applyResult) {
	e.count[k]++
	e.apps[k] = append(e.apps[k], r.bag)
	e.seq = append(e.seq, k)
	e.trail = append(e.trail, r.next)
}

func (e *explainer) pop(k int) {
	e.count[k]--
	e.apps[k] = e.apps[k][:len(e.apps[k])-1]
	e.seq = e.seq[:len(e.seq)-1]
	e.trail = e.trail[:len(e.trail)-1]
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// leaf evaluates the current sequence as a complete execution (its final
// state matches): the cost of each message, and the explanation if it is
// within the level and simpler than the best so far.
func (e *explainer) leaf() {
	cost := b2i(e.rt) + b2i(e.send) + b2i(e.out)
	if cost > e.level {
		return
	}
	base := uint(0)
	if e.rt {
		base |= nameBit(histories.RealTime)
	}
	if e.send || e.out {
		base |= nameBit(histories.OutOfOrder)
	}
	plans := make([]keyPlan, len(e.ks))
	options := make([][]keyPlan, len(e.ks))
	for k := range e.ks {
		c, opts := e.plan(k)
		if c < 0 {
			return
		}
		cost += c
		if cost > e.level {
			return
		}
		options[k] = opts
	}
	// The fewest distinct names, then the most specific ones, over the
	// choices of equal cost of each message.
	masks := map[uint]bool{base: true}
	for _, opts := range options {
		next := map[uint]bool{}
		for m := range masks {
			for _, o := range opts {
				next[m|o.names] = true
			}
		}
		masks = next
	}
	best := uint(0)
	found := false
	for m := range masks {
		if !found || simplerNames(m, best) {
			best, found = m, true
		}
	}
	overwrote, kept := e.lostUpdates()
	if e.best != nil && !e.best.worseThan(cost, best, overwrote, kept) {
		return
	}
	for k, opts := range options {
		for _, o := range opts {
			if o.names&^best == 0 {
				plans[k] = o
				break
			}
		}
	}
	e.best = &explanation{cost: cost, names: best, overwrote: overwrote, kept: kept, seq: slices.Clone(e.seq), first: slices.Clone(e.first),
		trail: slices.Clone(e.trail), rt: e.rt, send: e.send, out: e.out, plans: plans}
}

// worseThan reports whether x is less simple than an explanation of cost
// deviations with the names, which explains overwrote lost updates as
// such and kept the wrong way round.
func (x *explanation) worseThan(cost int, names uint, overwrote, kept int) bool {
	switch {
	case cost != x.cost:
		return cost < x.cost
	case names != x.names:
		return simplerNames(names, x.names)
	case overwrote != x.overwrote:
		return overwrote > x.overwrote
	}
	return kept < x.kept
}

// plan returns the cost of accounting for message k in the current
// sequence and the ways of doing it at that cost; a negative cost means
// the sequence cannot account for it.
func (e *explainer) plan(k int) (int, []keyPlan) {
	c, obs := e.count[k], e.obs[k]
	if c == 0 {
		if len(obs) == 0 {
			if e.free[k] {
				return 0, []keyPlan{{}}
			}
			return 1, []keyPlan{{names: nameBit(histories.Lost)}}
		}
		// It published: a phantom that saw one of the states.
		for i, st := range e.trail {
			r := e.cache.apply(st, e.ks[k])
			if r.err == nil && obs.within(r.bag) {
				return 1, []keyPlan{{phantom: true, phantomAt: i, names: nameBit(e.phantomName(k))}}
			}
		}
		return -1, nil
	}
	cost, opts := e.publications(k, nil)
	if c+1 <= e.maxApps[k] && cost != 0 {
		for i, st := range e.trail {
			r := e.cache.apply(st, e.ks[k])
			if r.err != nil {
				continue
			}
			published := r.bag.minus(r.bag.minus(obs)) // it may have crashed halfway
			if len(published) == 0 {
				continue
			}
			pc, popts := e.publications(k, published)
			if pc < 0 {
				continue
			}
			pc++
			if cost >= 0 && pc > cost {
				continue
			}
			if cost < 0 || pc < cost {
				cost, opts = pc, nil
			}
			for _, p := range popts {
				p.phantom, p.phantomAt = true, i
				p.names |= nameBit(e.phantomName(k))
				opts = addPlan(opts, p)
			}
		}
	}
	if cost < 0 {
		return -1, nil
	}
	return cost + c - 1, withRepeats(opts, c)
}

// withRepeats adds duplicate to the names of the plans of a message
// applied c times, more than once.
func withRepeats(opts []keyPlan, c int) []keyPlan {
	if c == 1 {
		return opts
	}
	var out []keyPlan
	for _, o := range opts {
		o.names |= nameBit(histories.Duplicate)
		out = addPlan(out, o)
	}
	return out
}

// addPlan adds p to the plans unless one has its names already.
func addPlan(plans []keyPlan, p keyPlan) []keyPlan {
	if slices.ContainsFunc(plans, func(o keyPlan) bool { return o.names == p.names }) {
		return plans
	}
	return append(plans, p)
}

func (e *explainer) phantomName(k int) histories.Anomaly {
	switch {
	case e.ghostly[k]:
		return histories.Ghost
	case e.count[k] == 0:
		return histories.Lost
	}
	return histories.Duplicate
}

// publications compares the observed outputs of message k, less what a
// phantom published, with what subsets of its applications publish (the
// first application's, alone, when it was applied once): 0 when some
// subset's outputs, merged by id or not, are what was observed; 1 when
// some were never published, or published again under a new id; -1
// otherwise.
func (e *explainer) publications(k int, phantom bag) (int, []keyPlan) {
	apps, obs := e.apps[k], e.obs[k]
	best, plans := -1, []keyPlan(nil)
	consider := func(c int, p keyPlan) {
		switch {
		case best < 0 || c < best:
			best, plans = c, []keyPlan{p}
		case c == best:
			plans = addPlan(plans, p)
		}
	}
	subsets := 1<<len(apps) - 1
	for s := 1; s <= subsets; s++ {
		if len(apps) == 1 && s != 1 {
			break
		}
		union, total := phantom, phantom
		for i, b := range apps {
			if s&(1<<i) != 0 {
				union, total = union.union(b), total.sum(b)
			}
		}
		switch {
		case union.within(obs) && obs.within(total):
			consider(0, keyPlan{outcome: outMatched})
		case obs.within(total):
			consider(1, keyPlan{outcome: outLost, missing: union.minus(obs), names: nameBit(histories.Lost)})
		case union.within(obs):
			extra := obs.minus(total)
			if allIn(extra, union) {
				consider(1, keyPlan{outcome: outRepublished, extra: extra, names: nameBit(histories.Duplicate)})
			}
		}
	}
	return best, plans
}

func allIn(xs, of bag) bool {
	for _, x := range xs {
		if !slices.Contains(of, x) {
			return false
		}
	}
	return true
}

// simplestFirst orders the anomaly names for ties between explanations of
// as many deviations: an execution that applies every message once, in
// another order, before one that leaves a message out or applies it again.
var simplestFirst = []histories.Anomaly{
	histories.OutOfOrder, histories.RealTime, histories.Lost, histories.Duplicate, histories.Ghost,
}

// nameBit is an anomaly's bit in a set of names (simplestFirst).
func nameBit(a histories.Anomaly) uint {
	return 1 << slices.Index(simplestFirst, a)
}

// simplerNames reports whether the set of names x is simpler than y: fewer
// names, then the ones earlier in simplestFirst.
func simplerNames(x, y uint) bool {
	if bits.OnesCount(x) != bits.OnesCount(y) {
		return bits.OnesCount(x) < bits.OnesCount(y)
	}
	for x != y {
		lx, ly := x&-x, y&-y
		if lx != ly {
			return lx < ly
		}
		x, y = x&^lx, y&^ly
	}
	return false
}

// explainAggregate adds the findings of one failing aggregate to res. It
// fails only when the history cannot be read again.
func explainAggregate(a *analysis, m model.Model, agg string, outOrder bool, res *Result) error {
	e, err := newExplainer(a, m, agg, outOrder)
	if err != nil {
		return err
	}
	x, complete := e.search()
	keys := a.keysOfAggregate(agg)
	if x == nil {
		order := make([]string, 0, len(keys))
		for _, k := range e.prefer {
			order = append(order, e.ks[k].Key)
		}
		res.Expected = append(res.Expected, describeClosest(a, agg, order, once(a, e.cache, agg, order))...)
		text := fmt.Sprintf("the effects on %s match no execution with at most %d deviations from exactly-once "+
			"(a message left out, applied again, applied without its state change, outputs lost or published again, an order against send order or real time)", agg, maxDeviations)
		if !complete {
			text = fmt.Sprintf("the search for the simplest explanation of %s stopped at its budget (%d steps) before finding one; "+
				"this names no cause: compare the closest exactly-once execution below with the observation", agg, searchBudget)
		}
		res.add(Finding{Anomaly: histories.Inconsistent, Aggregate: agg, Keys: keys, Text: text})
		return nil
	}
	order := make([]string, 0, len(keys))
	for _, k := range x.first {
		order = append(order, e.ks[k].Key)
	}
	// The closest exactly-once execution: the explanation's order, with
	// the messages it leaves out at the end; where the order is the
	// deviation, send order (ordered models) or the order of first
	// delivery, which respects real time.
	reference := slices.Clone(order)
	for i, l := range e.ks {
		if !slices.Contains(x.first, i) {
			reference = append(reference, l.Key)
		}
	}
	if x.send || x.rt || x.out {
		ls := slices.Clone(e.ks)
		if !e.ordered {
			slices.SortStableFunc(ls, func(p, q *logical) int { return p.Call - q.Call })
		}
		reference = reference[:0]
		for _, l := range ls {
			reference = append(reference, l.Key)
		}
	}
	res.Expected = append(res.Expected, describeClosest(a, agg, reference, once(a, e.cache, agg, reference))...)
	applications := make([]string, len(x.seq))
	for i, k := range x.seq {
		applications[i] = e.ks[k].Key
	}
	res.Expected = append(res.Expected, fmt.Sprintf("  the simplest explanation (%d %s from exactly-once) applies %s",
		x.cost, plural(x.cost, "deviation", "deviations"), strings.Join(applications, ", ")))
	if !complete {
		res.Expected = append(res.Expected, fmt.Sprintf("  (the search stopped at its budget of %d steps: the explanation above is the simplest found, with %d deviations, not proven the simplest)", searchBudget, x.cost))
	}
	if x.send {
		sent := make([]string, 0, len(order))
		for _, l := range e.ks {
			if slices.Contains(order, l.Key) {
				sent = append(sent, l.Key)
			}
		}
		res.add(outOfOrder(a, agg, sent, order))
	}
	if x.out {
		res.add(outputsOutOfOrder(e, x, order))
	}
	if x.rt {
		if f, ok := againstRealTime(a, agg, order); ok {
			res.add(f)
		}
	}
	applied := map[int]int{}
	for _, k := range x.seq {
		applied[k]++
	}
	for k, l := range e.ks {
		p := x.plans[k]
		c := applied[k]
		obs := l.contents()
		switch {
		case c == 0 && p.phantom && p.names == nameBit(histories.Ghost):
			res.add(Finding{Anomaly: histories.Ghost, Aggregate: agg, Keys: []string{l.Key},
				Text: fmt.Sprintf("%s published %s from an attempt that never committed, and its state change is not in the final state of %s", l.describe(), obs, agg)})
		case c == 0 && p.phantom:
			res.add(overwritten(e, applied, k, Finding{Anomaly: histories.Lost, Aggregate: agg, Keys: []string{l.Key},
				Text: fmt.Sprintf("%s published %s, but its state change is missing from the final state of %s: the final state is what the other messages give without it", l.describe(), obs, agg)}))
		case c == 0 && p.names != 0:
			f := Finding{Anomaly: histories.Lost, Aggregate: agg, Keys: []string{l.Key}}
			if r := e.cache.apply(e.cache.m.Initial(agg), l); r.err == nil && len(r.outs) > 0 {
				f.Text = fmt.Sprintf("%s had no effect at all: its state change is not in the final state of %s and it published nothing", l.describe(), agg)
			} else {
				f.Text = fmt.Sprintf("%s had no effect at all on the final state of %s", l.describe(), agg)
			}
			res.add(overwritten(e, applied, k, f))
		}
		if c > 1 {
			res.add(Finding{Anomaly: histories.Duplicate, Aggregate: agg, Keys: []string{l.Key},
				Text: fmt.Sprintf("%s was applied %s: the final state and outputs match an execution that applies it %s (observed outputs %s)", l.describe(), times(c), times(c), obs)})
		}
		if c > 0 && p.phantom {
			seen := x.trail[p.phantomAt]
			var own bag
			for i, j := range x.seq {
				if j == k {
					own = own.sum(e.cache.apply(x.trail[i], l).bag)
				}
			}
			extra := e.obs[k].minus(own)
			if p.names&nameBit(histories.Ghost) != 0 {
				res.add(Finding{Anomaly: histories.Ghost, Aggregate: agg, Keys: []string{l.Key},
					Text: fmt.Sprintf("%s published %s from an attempt that never committed (computed on the state %s); no exactly-once execution publishes it", l.describe(), extra, seen)})
			} else {
				res.add(Finding{Anomaly: histories.Duplicate, Aggregate: agg, Keys: []string{l.Key},
					Text: fmt.Sprintf("%s was applied once more without its state change: it published %s, computed on the state %s", l.describe(), extra, seen)})
			}
		}
		if c == 0 {
			continue
		}
		switch p.outcome {
		case outLost:
			f := Finding{Anomaly: histories.Lost, Aggregate: agg, Keys: []string{l.Key}}
			if anyIn(p.missing, e.obs[k]) {
				f.Text = fmt.Sprintf("%s published only %s of its outputs; an exactly-once execution also publishes %s", l.describe(), obs, p.missing)
			} else {
				f.Text = fmt.Sprintf("%s never published %s (published %s)", l.describe(), p.missing, obs)
			}
			if hidden := shadowedIn(l, p.missing); hidden != "" {
				f.Text = fmt.Sprintf("%s: %s never reached downstream (it got %s); %s", l.describe(), p.missing, obs, hidden)
			}
			res.add(f)
		case outRepublished:
			res.add(Finding{Anomaly: histories.Duplicate, Aggregate: agg, Keys: []string{l.Key},
				Text: fmt.Sprintf("%s published %s again with a new message id", l.describe(), p.extra)})
		}
	}
	return nil
}

// overwritten adds to the finding that message k's state change is
// missing the lost update that overwrote it, if the history shows one by
// a message the explanation applies: the overwriting message joins the
// finding's keys.
func overwritten(e *explainer, applied map[int]int, k int, f Finding) Finding {
	for _, w := range e.overwrites {
		if w.under.l == e.ks[k] && applied[slices.Index(e.ks, w.over.l)] > 0 {
			f.Keys = append(f.Keys, w.over.l.Key)
			f.Text += "; " + w.sentence()
			return f
		}
	}
	return f
}

func anyIn(xs, of bag) bool {
	for _, x := range xs {
		if slices.Contains(of, x) {
			return true
		}
	}
	return false
}

// outputsOutOfOrder explains an aggregate whose outputs were published in
// another order than its messages took effect.
func outputsOutOfOrder(e *explainer, x *explanation, order []string) Finding {
	last := -1
	for _, k := range x.first {
		if e.minPub[k] == 0 {
			continue
		}
		if last >= 0 && e.minPub[k] < e.maxPub[last] {
			early, late := e.ks[last], e.ks[k]
			return Finding{Anomaly: histories.OutOfOrder, Aggregate: e.agg, Keys: []string{late.Key, early.Key},
				Text: fmt.Sprintf("the outputs of %s were published (step %d) before those of %s (step %d), which took effect before it; the effects on %s match the order %s, and its outputs must be published in that order",
					late.describe(), e.minPub[k], early.describe(), e.maxPub[last], e.agg, strings.Join(order, ", "))}
		}
		if last < 0 || e.maxPub[k] > e.maxPub[last] {
			last = k
		}
	}
	return Finding{Anomaly: histories.OutOfOrder, Aggregate: e.agg, Keys: order,
		Text: fmt.Sprintf("the outputs of %s were not published in the order %s, in which its messages took effect", e.agg, strings.Join(order, ", "))}
}

// evaluation is an exactly-once execution of an order: its final state
// and each message's outputs.
type evaluation struct {
	state   model.State
	outputs map[string]model.Outputs
}

// once applies each message of order once.
func once(a *analysis, c *applyCache, agg string, order []string) evaluation {
	ev := evaluation{state: c.m.Initial(agg), outputs: map[string]model.Outputs{}}
	for _, k := range order {
		r := c.apply(ev.state, a.logicals[k])
		if r.err != nil {
			break
		}
		ev.state, ev.outputs[k] = r.next, r.outs
	}
	return ev
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

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// shadowedIn says which of the contents in missing l did publish, under an
// id another content had taken first (downstream keeps the first copy of
// an id): "" when none.
func shadowedIn(l *logical, missing bag) string {
	var parts []string
	for _, s := range l.Shadowed {
		if slices.Contains(missing, s.Content.String()) {
			parts = append(parts, fmt.Sprintf("%s was published at step %d under id %q, which step %d had taken with another content", s.Content, s.Step, s.ID, s.First))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ") + ", and downstream keeps the first copy of an id"
}
