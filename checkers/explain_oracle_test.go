package checkers_test

import (
	"flag"
	"fmt"
	"math/bits"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// This file holds the explainer to an oracle written from
// docs/history-format.md ("How a violation is explained") alone: on
// histories of every strategy, model and fault kind, and on hand-mutated
// ones, the oracle computes the verdict and the names of the simplest
// explanation by its own enumeration (count vectors, then the sequences
// they allow), and the checker must agree. It shares no code with the
// checker but the model.

var soakHistories = flag.Int("oncecheck.explain-histories", 0, "histories for TestExplanationsAgreeWithOracle (0: 5,000, 500 with -short)")

// oMsg is what the oracle knows of one logical message.
type oMsg struct {
	msg       model.Message
	call, ret int
	attempts  int
	finished  bool
	outs      []oOut // distinct by id
	ghostly   bool
}

type oOut struct {
	id, content string
	step        int
	ghostly     bool
}

// oracleHistory is the oracle's digest of a history.
type oracleHistory struct {
	aggs     map[string][]*oMsg
	observed map[string]model.State
	stuck    bool
	problems []histories.Anomaly
}

func canonical(o model.Output) string {
	if p, err := model.Canonical(o.Payload); err == nil {
		o.Payload = p
	}
	return o.String()
}

func digestForOracle(h *histories.History, policy checkers.Downstream) *oracleHistory {
	d := &oracleHistory{aggs: map[string][]*oMsg{}, observed: map[string]model.State{}}
	byKey, byID := map[string]*oMsg{}, map[string]*oMsg{}
	type att struct {
		m                *oMsg
		wrote, committed bool
		start, end       int
	}
	atts := map[int]*att{}
	last := 0
	for _, ev := range h.Events {
		last = ev.Step
	}
	for i := range h.Events {
		ev := &h.Events[i]
		switch ev.Kind {
		case histories.Send:
			m := byKey[ev.Message.Key]
			if m == nil {
				m = &oMsg{msg: *ev.Message, call: ev.Step}
				byKey[m.msg.Key] = m
				d.aggs[m.msg.Aggregate] = append(d.aggs[m.msg.Aggregate], m)
			}
			byID[ev.Message.ID] = m
		case histories.Deliver:
			m := byID[ev.Message.ID]
			if m.attempts == 0 {
				m.call = ev.Step
			}
			m.attempts++
			atts[ev.Attempt] = &att{m: m, start: ev.Step}
		case histories.Write:
			if a := atts[ev.Attempt]; a != nil {
				a.wrote = true
			}
		case histories.Commit:
			if a := atts[ev.Attempt]; a != nil {
				a.committed = true
			}
		case histories.Done, histories.Crash:
			if a := atts[ev.Attempt]; a != nil {
				a.end = ev.Step
				if ev.Kind == histories.Done {
					a.m.finished = true
				}
			}
		case histories.Observe:
			d.observed[ev.Aggregate] = ev.State
		case histories.Undrained:
			d.stuck = true
		}
	}
	for _, m := range byKey {
		if m.attempts == 0 {
			m.ret = last + 1
		}
	}
	for _, a := range atts {
		if a.end == 0 {
			a.end = last + 1
		}
		a.m.ret = max(a.m.ret, a.end)
	}
	ghostlyAttempt := func(n int) bool { a := atts[n]; return n != 0 && a != nil && a.wrote && !a.committed }
	// Outputs by id: the first publication, unless it was a ghost's and a
	// committed attempt published the id with another content.
	seen := map[string]*oOut{}
	owner := map[string]*oMsg{}
	copies := map[string]int{}
	type ghostOut struct {
		m *oMsg
		o oOut
	}
	var ghosts []ghostOut
	for i := range h.Events {
		ev := &h.Events[i]
		if ev.Kind != histories.Publish {
			continue
		}
		c := canonical(ev.Message.Output())
		g := ghostlyAttempt(ev.Attempt)
		copies[ev.Message.ID]++
		if prev := seen[ev.Message.ID]; prev != nil {
			if prev.content != c || owner[ev.Message.ID] != byKey[ev.Message.Causation] {
				if prev.ghostly != g {
					d.problems = append(d.problems, histories.Ghost)
				} else {
					d.problems = append(d.problems, histories.Inconsistent)
				}
				if prev.ghostly && !g {
					// The ghost's content stays an output of its message.
					ghosts = append(ghosts, ghostOut{owner[ev.Message.ID], *prev})
					prev.content, prev.ghostly = c, false
				}
			} else if policy == checkers.DownstreamNone && copies[ev.Message.ID] == 2 {
				d.problems = append(d.problems, histories.Duplicate)
			}
			continue
		}
		m := byKey[ev.Message.Causation]
		if m == nil {
			d.problems = append(d.problems, histories.Ghost)
			seen[ev.Message.ID] = &oOut{}
			continue
		}
		o := &oOut{id: ev.Message.ID, content: c, step: ev.Step, ghostly: g}
		seen[ev.Message.ID] = o
		owner[ev.Message.ID] = m
		m.outs = append(m.outs, *o)
	}
	// The contents settled above, copied back.
	for id, o := range seen {
		if m := owner[id]; m != nil {
			for j := range m.outs {
				if m.outs[j].id == id {
					m.outs[j].content, m.outs[j].ghostly = o.content, o.ghostly
				}
			}
		}
	}
	for _, g := range ghosts {
		if g.m != nil {
			g.m.outs = append(g.m.outs, g.o)
		}
	}
	for _, ms := range d.aggs {
		for _, m := range ms {
			for _, o := range m.outs {
				m.ghostly = m.ghostly || o.ghostly
			}
		}
	}
	return d
}

// ms is a multiset of output texts.
type ms map[string]int

func msOf(xs []string) ms {
	m := ms{}
	for _, x := range xs {
		m[x]++
	}
	return m
}

func (a ms) le(b ms) bool {
	for k, n := range a {
		if b[k] < n {
			return false
		}
	}
	return true
}

func (a ms) eq(b ms) bool { return a.le(b) && b.le(a) }

var oracleNames = []histories.Anomaly{histories.OutOfOrder, histories.RealTime, histories.Lost, histories.Duplicate, histories.Ghost}

func bitOf(a histories.Anomaly) uint { return 1 << slices.Index(oracleNames, a) }

// simpler: fewer names, then earlier ones.
func simpler(x, y uint) bool {
	if bits.OnesCount(x) != bits.OnesCount(y) {
		return bits.OnesCount(x) < bits.OnesCount(y)
	}
	for i := range oracleNames {
		bx, by := x&(1<<i) != 0, y&(1<<i) != 0
		if bx != by {
			return bx
		}
	}
	return false
}

type appOut struct {
	state model.State
	outs  []string
}

// oracleAggregate returns the cost of the simplest explanation of one
// aggregate (-1: none within three deviations) and its names.
func oracleAggregate(m model.Model, agg string, msgs []*oMsg, observed model.State, stuck bool, outOrder bool) (int, uint) {
	n := len(msgs)
	apply := func(s model.State, i int) (model.State, []string, bool) {
		next, outs, err := m.Apply(s, msgs[i].msg)
		if err != nil {
			return nil, nil, false
		}
		texts := make([]string, len(outs))
		for j, o := range outs {
			texts[j] = canonical(o)
		}
		return next, texts, true
	}
	obs := make([]ms, n)
	minPub, maxPub := make([]int, n), make([]int, n)
	maxApps := make([]int, n)
	free := make([]bool, n)
	for i, x := range msgs {
		var texts []string
		for _, o := range x.outs {
			texts = append(texts, o.content)
			if minPub[i] == 0 || o.step < minPub[i] {
				minPub[i] = o.step
			}
			maxPub[i] = max(maxPub[i], o.step)
		}
		obs[i] = msOf(texts)
		maxApps[i] = max(1, x.attempts)
		free[i] = stuck && !x.finished
	}
	keyCost := func(i int, apps []appOut, trail []model.State) (int, []uint) {
		c := len(apps)
		if c == 0 {
			if len(obs[i]) == 0 {
				if free[i] {
					return 0, []uint{0}
				}
				return 1, []uint{bitOf(histories.Lost)}
			}
			for _, st := range trail {
				if _, outs, ok := apply(st, i); ok && obs[i].le(msOf(outs)) {
					if msgs[i].ghostly {
						return 1, []uint{bitOf(histories.Ghost)}
					}
					return 1, []uint{bitOf(histories.Lost)}
				}
			}
			return -1, nil
		}
		best, names := -1, []uint(nil)
		note := func(cost int, b uint) {
			if c > 1 {
				cost += c - 1
				b |= bitOf(histories.Duplicate)
			}
			if best < 0 || cost < best {
				best, names = cost, nil
			}
			if cost == best && !slices.Contains(names, b) {
				names = append(names, b)
			}
		}
		phantoms := [][]string{nil}
		if c+1 <= maxApps[i] {
			for _, st := range trail {
				if _, outs, ok := apply(st, i); ok {
					// What it published before it crashed, maybe all.
					var some []string
					left := ms{}
					for k, v := range obs[i] {
						left[k] = v
					}
					for _, o := range outs {
						if left[o] > 0 {
							left[o]--
							some = append(some, o)
						}
					}
					if len(some) > 0 {
						phantoms = append(phantoms, some)
					}
				}
			}
		}
		for pi, ph := range phantoms {
			for s := 1; s < 1<<c; s++ {
				if c == 1 && s != 1 {
					break
				}
				union, total := msOf(ph), msOf(ph)
				for j, a := range apps {
					if s&(1<<j) == 0 {
						continue
					}
					am := msOf(a.outs)
					for k, v := range am {
						total[k] += v
						union[k] = max(union[k], v)
					}
				}
				extraCost, extraName := 0, uint(0)
				if pi > 0 {
					extraCost = 1
					if msgs[i].ghostly {
						extraName = bitOf(histories.Ghost)
					} else {
						extraName = bitOf(histories.Duplicate)
					}
				}
				switch {
				case union.le(obs[i]) && obs[i].le(total):
					note(extraCost, extraName)
				case obs[i].le(total):
					note(extraCost+1, extraName|bitOf(histories.Lost))
				case union.le(obs[i]):
					ok := true
					for k, v := range obs[i] {
						if v > total[k] && union[k] == 0 {
							ok = false
						}
					}
					if ok {
						note(extraCost+1, extraName|bitOf(histories.Duplicate))
					}
				}
			}
		}
		return best, names
	}
	for level := 0; level <= 3; level++ {
		found, bestNames := false, uint(0)
		counts := make([]int, n)
		var vectors func(i, cost int)
		var sequences func(left []int, state model.State, trail []model.State, apps [][]appOut, first []int, flags uint, cost int)
		sequences = func(left []int, state model.State, trail []model.State, apps [][]appOut, first []int, flags uint, cost int) {
			done := true
			for i := range left {
				if left[i] > 0 {
					done = false
				}
			}
			if done {
				if !state.Equal(observed) {
					return
				}
				total := bits.OnesCount(flags)
				combos := []uint{flags}
				for i := 0; i < n; i++ {
					kc, names := keyCost(i, apps[i], trail)
					if kc < 0 {
						return
					}
					total += kc
					var next []uint
					for _, c := range combos {
						for _, nm := range names {
							next = append(next, c|nm)
						}
					}
					combos = next
				}
				if total != level {
					return
				}
				for _, c := range combos {
					if !found || simpler(c, bestNames) {
						found, bestNames = true, c
					}
				}
				return
			}
			for i := 0; i < n; i++ {
				if left[i] == 0 {
					continue
				}
				next, outs, ok := apply(state, i)
				if !ok {
					continue
				}
				f, c := flags, cost
				if len(apps[i]) == 0 {
					for _, j := range first {
						if msgs[i].ret < msgs[j].call {
							f |= bitOf(histories.RealTime)
						}
						if m.Ordered() && msgs[i].msg.Position < msgs[j].msg.Position {
							f |= bitOf(histories.OutOfOrder)
						}
						if outOrder && minPub[i] != 0 && maxPub[j] != 0 && minPub[i] < maxPub[j] {
							f |= bitOf(histories.OutOfOrder)
						}
					}
					if counts[i] == 1 && !msOf(outs).eq(obs[i]) {
						c++ // its outputs deviate, or a phantom does
					}
				}
				if c+bits.OnesCount(f) > level {
					continue
				}
				left[i]--
				apps[i] = append(apps[i], appOut{state, outs})
				nf := first
				if len(apps[i]) == 1 {
					nf = append(slices.Clone(first), i)
				}
				sequences(left, next, append(slices.Clone(trail), next), apps, nf, f, c)
				apps[i] = apps[i][:len(apps[i])-1]
				left[i]++
			}
		}
		vectors = func(i, cost int) {
			if cost > level {
				return
			}
			if i == n {
				init := m.Initial(agg)
				sequences(slices.Clone(counts), init, []model.State{init}, make([][]appOut, n), nil, 0, cost)
				return
			}
			for c := 0; c <= maxApps[i] && c <= 4; c++ {
				counts[i] = c
				extra := max(0, c-1)
				if c == 0 && !free[i] {
					extra = 1
				}
				if c == 0 && len(obs[i]) > 0 && free[i] {
					extra = 1 // it published: a phantom
				}
				vectors(i+1, cost+extra)
			}
			counts[i] = 0
		}
		vectors(0, 0)
		if found {
			return level, bestNames
		}
	}
	return -1, 0
}

// oracleCheck returns the oracle's verdict and anomaly names.
func oracleCheck(m model.Model, h *histories.History, policy checkers.Downstream) (histories.Verdict, []histories.Anomaly) {
	d := digestForOracle(h, policy)
	names := map[histories.Anomaly]bool{}
	for _, p := range d.problems {
		names[p] = true
	}
	if d.stuck {
		names[histories.Stuck] = true
	}
	for agg, st := range d.observed {
		if len(d.aggs[agg]) == 0 && !st.Equal(m.Initial(agg)) {
			names[histories.Inconsistent] = true
		}
	}
	aggs := make([]string, 0, len(d.aggs))
	for agg := range d.aggs {
		aggs = append(aggs, agg)
	}
	sort.Strings(aggs)
	for _, agg := range aggs {
		obs, ok := d.observed[agg]
		if !ok {
			continue
		}
		cost, b := oracleAggregate(m, agg, d.aggs[agg], obs, d.stuck, m.Ordered())
		switch {
		case cost < 0:
			names[histories.Inconsistent] = true
		case cost > 0:
			for i, a := range oracleNames {
				if b&(1<<i) != 0 {
					names[a] = true
				}
			}
		}
	}
	if len(names) == 0 {
		return histories.Pass, nil
	}
	var out []histories.Anomaly
	for a := range names {
		out = append(out, a)
	}
	slices.Sort(out)
	return histories.Violation, out
}

// soakSource generates the histories: every strategy, model and fault
// kind (one kind, or all), from consecutive seeds.
type soakSource struct {
	testers []*campaign.Tester
	models  []model.Model
	names   []string
}

func newSoakSource(t *testing.T) *soakSource {
	cat := catalogue.Builtin()
	s := &soakSource{}
	kinds := append([][]faults.Kind{faults.AllKinds}, nil...)
	for _, k := range faults.AllKinds {
		kinds = append(kinds, []faults.Kind{k})
	}
	for _, st := range cat.Strategies {
		for _, m := range cat.Models {
			for _, ks := range kinds {
				tr, err := campaign.New(campaign.Config{Model: m, Strategy: st, Faults: ks})
				if err != nil {
					continue // a strategy that does not apply to the model
				}
				t.Cleanup(func() { _ = tr.Close() })
				s.testers = append(s.testers, tr)
				s.models = append(s.models, m)
				s.names = append(s.names, fmt.Sprintf("%s/%s/%v", st.Name, m.Name(), ks))
			}
		}
	}
	return s
}

// mutate changes a history by hand, as a person editing it would: a
// publish deleted or duplicated (same id or a new one), a state changed,
// two deliveries swapped.
func mutate(h *histories.History, m model.Model, r uint64) string {
	pick := func(kind histories.Kind) []int {
		var at []int
		for i, ev := range h.Events {
			if ev.Kind == kind {
				at = append(at, i)
			}
		}
		return at
	}
	pubs, obs, dels := pick(histories.Publish), pick(histories.Observe), pick(histories.Deliver)
	switch r % 6 {
	case 0:
		if len(pubs) > 0 {
			i := pubs[int(r/6)%len(pubs)]
			h.Events = slices.Delete(h.Events, i, i+1)
			return "publish deleted"
		}
	case 1, 2:
		if len(pubs) > 0 {
			i := pubs[int(r/6)%len(pubs)]
			ev := h.Events[i]
			cp := *ev.Message
			if r%6 == 2 {
				cp.ID += "-again"
			}
			ev.Message = &cp
			h.Events = slices.Insert(h.Events, i+1, ev)
			return "publish duplicated"
		}
	case 3:
		if len(obs) > 0 {
			i := obs[int(r/6)%len(obs)]
			ev := &h.Events[i]
			ev.State = m.Initial(ev.Aggregate)
			return "state reset"
		}
	case 4:
		if len(obs) > 0 && len(h.Header.Workload) > 0 {
			i := obs[int(r/6)%len(obs)]
			ev := &h.Events[i]
			for _, w := range h.Header.Workload {
				if w.Aggregate == ev.Aggregate {
					if next, _, err := m.Apply(ev.State, w); err == nil {
						ev.State = next
						return "state changed"
					}
				}
			}
		}
	case 5:
		if len(dels) > 1 {
			i, j := dels[int(r/6)%len(dels)], dels[int(r/36)%len(dels)]
			h.Events[i].Message, h.Events[j].Message = h.Events[j].Message, h.Events[i].Message
			return "deliveries swapped"
		}
	}
	return "none"
}

// TestExplanationsAgreeWithOracle: on generated histories (a fifth of them
// mutated by hand), the checker's verdict and anomaly names equal the
// oracle's, and no finding's text contradicts its history. The figures
// are in docs/benchmarks.md (make soak runs 100,000).
func TestExplanationsAgreeWithOracle(t *testing.T) {
	total := *soakHistories
	if total == 0 {
		total = 5000
		if testing.Short() {
			total = 500
		}
	}
	src := newSoakSource(t)
	var runs, violations, verdictAgree, nameAgree, skipped int
	var disagreements []string
	for i := range total {
		ti := i % len(src.testers)
		tr, m := src.testers[ti], src.models[ti]
		seed := uint64(i/len(src.testers)) + 1
		h, _, err := tr.Execute(tr.Generate(seed), seed)
		require.NoError(t, err)
		mutation := "none"
		if i%5 == 4 {
			mutation = mutate(h, m, seed*7919+uint64(i))
		}
		if h.Validate() != nil {
			skipped++
			continue
		}
		policy := checkers.Downstream(h.Header.Downstream)
		res, err := checkers.Check(h, m, checkers.Options{Downstream: policy})
		if err != nil || res.Verdict == histories.Inconclusive {
			skipped++
			continue
		}
		runs++
		wantVerdict, wantNames := oracleCheck(m, h, policy)
		got := slices.Clone(res.Anomalies)
		slices.Sort(got)
		if res.Verdict == wantVerdict {
			verdictAgree++
		}
		if wantVerdict == histories.Violation {
			violations++
			if slices.Equal(got, wantNames) {
				nameAgree++
			} else if len(disagreements) < 20 {
				disagreements = append(disagreements, fmt.Sprintf("%s seed %d (%s): checker %v, oracle %v", src.names[ti], seed, mutation, got, wantNames))
			}
		}
		if res.Verdict == histories.Violation && !slices.Contains(got, histories.Ghost) {
			// Only ghost is defined by commits: without the transaction
			// events, the names stay.
			bare := withoutTransactions(h)
			again, err := checkers.Check(bare, m, checkers.Options{Downstream: policy})
			require.NoError(t, err)
			names := slices.Clone(again.Anomalies)
			slices.Sort(names)
			require.Equal(t, got, names, "%s seed %d (%s): names without the transaction events", src.names[ti], seed, mutation)
		}
		for _, f := range res.Findings {
			if msg := contradiction(h, f); msg != "" {
				t.Fatalf("%s seed %d (%s): finding contradicts the history: %s\n%s", src.names[ti], seed, mutation, msg, f.Text)
			}
		}
	}
	t.Logf("%d histories checked (%d skipped: refused or inconclusive); verdicts agree on %d (%.3f%%); on %d violations, names agree on %d (%.3f%%)",
		runs, skipped, verdictAgree, 100*float64(verdictAgree)/float64(runs), violations, nameAgree, 100*float64(nameAgree)/float64(max(1, violations)))
	for _, d := range disagreements {
		t.Log(d)
	}
	require.Equal(t, runs, verdictAgree, "verdicts")
	require.GreaterOrEqual(t, float64(nameAgree), 0.995*float64(violations), "names")
}

// withoutTransactions returns a copy of h without its begin, write, commit
// and abort events.
func withoutTransactions(h *histories.History) *histories.History {
	bare := &histories.History{Header: h.Header}
	for _, ev := range h.Events {
		switch ev.Kind {
		case histories.Begin, histories.Write, histories.Commit, histories.Abort:
			continue
		}
		bare.Events = append(bare.Events, ev)
	}
	return bare
}

// contradiction checks a finding's text against the history: a claim
// that a message never published something, published something, had no
// effect or was applied several times must be true of its events, and so
// must a lost update's transactions and steps (lostUpdateContradiction).
func contradiction(h *histories.History, f checkers.Finding) string {
	if msg := lostUpdateContradiction(h, f); msg != "" {
		return msg
	}
	// The claims below are about the finding's one message, or the
	// first of its messages when the text begins with it.
	if len(f.Keys) == 0 || len(f.Keys) > 1 && !strings.HasPrefix(f.Text, f.Keys[0]+" ") {
		return ""
	}
	key := f.Keys[0]
	var published []string
	deliveries := 0
	ids := map[string]bool{}
	for _, ev := range h.Events {
		if ev.Kind == histories.Publish && ev.Message.Causation == key && !ids[ev.Message.ID] {
			ids[ev.Message.ID] = true
			published = append(published, canonical(ev.Message.Output()))
		}
		if ev.Kind == histories.Deliver && ev.Message.Key == key {
			deliveries++
		}
		if ev.Kind == histories.Deliver && ev.Message.Key == "" {
			for _, s := range h.Events {
				if s.Kind == histories.Send && s.Message.ID == ev.Message.ID && s.Message.Key == key {
					deliveries++
					break
				}
			}
		}
	}
	text := f.Text
	if i := strings.Index(text, " never published ["); i >= 0 {
		missing := listAfter(text[i+len(" never published "):])
		for _, x := range missing {
			if slices.Contains(published, x) {
				return fmt.Sprintf("says %s never published %s, but it did", key, x)
			}
		}
	}
	if strings.Contains(text, "had no effect at all") && len(published) > 0 {
		return fmt.Sprintf("says %s had no effect, but it published %v", key, published)
	}
	if strings.Contains(text, "published nothing") && len(published) > 0 {
		return fmt.Sprintf("says %s published nothing, but it published %v", key, published)
	}
	for n, word := range map[int]string{2: "applied twice", 3: "applied 3 times", 4: "applied 4 times"} {
		if strings.Contains(text, word) && deliveries < n {
			return fmt.Sprintf("says %s was %s, but it was delivered %d times", key, word, deliveries)
		}
	}
	if i := strings.Index(text, " published ["); i >= 0 && !strings.Contains(text[:i], "never") {
		claimed := listAfter(text[i+len(" published "):])
		for _, x := range claimed {
			if !slices.Contains(published, x) {
				return fmt.Sprintf("says %s published %s, but it did not", key, x)
			}
		}
	}
	return ""
}

// lostUpdateClaim is the sentence of a finding that names a lost update.
var lostUpdateClaim = regexp.MustCompile(`a lost update: (\S+)'s transaction \((?:tx(\d+), )?begun at step (\d+), before (\S+)'s commit at step (\d+)\) ` +
	`wrote (\S+) at step (\d+) and committed at step (\d+), over (\S+)'s change(?: \(tx(\d+)\))?; it based its write on a state from before that commit$`)

// lostUpdateContradiction checks a finding that names a lost update
// against the events: the overwritten message is the finding's subject
// and lost; the overwriting message's transaction began, wrote the key
// and committed at the steps named; the overwritten message's transaction
// wrote the key and committed at the step named, between the other's
// begin and commit.
func lostUpdateContradiction(h *histories.History, f checkers.Finding) string {
	if !strings.Contains(f.Text, "lost update") {
		return ""
	}
	m := lostUpdateClaim.FindStringSubmatch(f.Text)
	if m == nil {
		return "a lost update in words the test does not know"
	}
	num := func(s string) int {
		n := 0
		_, _ = fmt.Sscan(s, &n)
		return n
	}
	over, overTx, begun, under, underCommit := m[1], num(m[2]), num(m[3]), m[4], num(m[5])
	key, wrote, committed, under2, underTx := m[6], num(m[7]), num(m[8]), m[9], num(m[10])
	switch {
	case under != under2 || over == under:
		return "names the overwritten message twice differently, or as the overwriting one"
	case f.Anomaly != histories.Lost || !slices.Equal(f.Keys, []string{under, over}) || !strings.HasPrefix(f.Text, under+" "):
		return fmt.Sprintf("a lost update of %s by %s in a %s finding of %v", under, over, f.Anomaly, f.Keys)
	case !(begun < underCommit && underCommit < committed):
		return "the steps named do not overlap"
	}
	// The message of each attempt.
	keyOfID, keyOf := map[string]string{}, map[int]string{}
	for _, ev := range h.Events {
		switch ev.Kind {
		case histories.Send:
			keyOfID[ev.Message.ID] = ev.Message.Key
		case histories.Deliver:
			keyOf[ev.Attempt] = keyOfID[ev.Message.ID]
		}
	}
	at := func(step int) *histories.Event {
		for i := range h.Events {
			if h.Events[i].Step == step {
				return &h.Events[i]
			}
		}
		return nil
	}
	b, w, c := at(begun), at(wrote), at(committed)
	switch {
	case b == nil || b.Kind != histories.Begin || keyOf[b.Attempt] != over || b.Tx != overTx:
		return fmt.Sprintf("step %d is no begin of transaction %d by an attempt at %s", begun, overTx, over)
	case w == nil || w.Kind != histories.Write || w.Attempt != b.Attempt || w.Tx != b.Tx || w.Detail != key:
		return fmt.Sprintf("step %d is no write of %s by %s's transaction", wrote, key, over)
	case c == nil || c.Kind != histories.Commit || c.Attempt != b.Attempt || c.Tx != b.Tx:
		return fmt.Sprintf("step %d is no commit of %s's transaction", committed, over)
	}
	u := at(underCommit)
	if u == nil || u.Kind != histories.Commit || keyOf[u.Attempt] != under || u.Tx != underTx {
		return fmt.Sprintf("step %d is no commit of transaction %d by an attempt at %s", underCommit, underTx, under)
	}
	for _, ev := range h.Events {
		if ev.Step < underCommit && ev.Kind == histories.Write && ev.Attempt == u.Attempt && ev.Tx == u.Tx && ev.Detail == key {
			return ""
		}
	}
	return fmt.Sprintf("%s's transaction committed at step %d never wrote %s", under, underCommit, key)
}

// listAfter parses the output list "[A{...}, B{...}]" at the start of s.
func listAfter(s string) []string {
	if !strings.HasPrefix(s, "[") {
		return nil
	}
	depth, start := 0, 1
	var out []string
	for i, r := range s {
		switch r {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				if i > start {
					out = append(out, strings.TrimSpace(s[start:i]))
				}
				return out
			}
		case ',':
			if depth == 1 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return out
}
