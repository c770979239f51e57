package checkers

import (
	"fmt"
	"maps"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// This file checks the checker against a brute-force oracle: on small
// histories (up to 5 logical messages, every built-in model, the ordered one
// included) the oracle tries every serial order of all messages, without
// partitioning and without porcupine, and the two must agree on pass versus
// violation.

type oracleCase struct {
	msgs     []model.Message
	deliver  []int // step of each message's first delivery
	end      []int // step at which its attempt ended
	outputs  [][]model.Message
	final    map[string]model.State
	history  *histories.History
	mutation string
	// aborted is an output published by an extra attempt at message
	// abortedOf that wrote, published and crashed without committing.
	aborted   *model.Message
	abortedOf int
}

// oracle reports whether some serial order respecting real time explains
// the observation. It tries the orders one message at a time, applying the
// model as it goes and abandoning an order as soon as a message's outputs
// differ from the observed ones (the orders it abandons cannot explain
// anything); it shares nothing with the checker but the model.
func oracle(m model.Model, c *oracleCase) bool {
	n := len(c.msgs)
	used := make([]bool, n)
	var try func(states map[string]model.State, last map[string]int64, placed int) bool
	try = func(states map[string]model.State, last map[string]int64, placed int) bool {
		if placed == n {
			for agg, st := range c.final {
				want, ok := states[agg]
				if !ok {
					want = m.Initial(agg)
				}
				if !want.Equal(st) {
					return false
				}
			}
			return true
		}
		for i := 0; i < n; i++ {
			if used[i] {
				continue
			}
			ok := true
			for j := 0; j < n; j++ {
				if !used[j] && j != i && c.end[j] < c.deliver[i] {
					ok = false // j ended before i began: j must come first
				}
			}
			msg := c.msgs[i]
			if !ok || m.Ordered() && msg.Position <= last[msg.Aggregate] {
				continue
			}
			st, seen := states[msg.Aggregate]
			if !seen {
				st = m.Initial(msg.Aggregate)
			}
			next, outs, err := m.Apply(st, msg)
			if err != nil || !outs.Equal(observedOutputs(c, i)) {
				continue
			}
			ns := maps.Clone(states)
			ns[msg.Aggregate] = next
			nl := maps.Clone(last)
			nl[msg.Aggregate] = msg.Position
			used[i] = true
			found := try(ns, nl, placed+1)
			used[i] = false
			if found {
				return true
			}
		}
		return false
	}
	return try(map[string]model.State{}, map[string]int64{}, 0)
}

// observedOutputs returns the outputs observed for message i, one per
// distinct id (what downstream deduplication by id lets through).
func observedOutputs(c *oracleCase, i int) model.Outputs {
	seen := map[string]bool{}
	var obs model.Outputs
	for _, o := range c.outputs[i] {
		if !seen[o.ID] {
			seen[o.ID] = true
			obs = append(obs, o.Output())
		}
	}
	return obs
}

// genOracleCase draws a small history: messages with random overlapping
// attempts, observations produced by some serial execution (not necessarily
// one that respects real time), then possibly corrupted.
func genOracleCase(t *rapid.T, m model.Model) *oracleCase {
	w := m.Workload(7).Draw(t, "workload")
	n := len(w)
	c := &oracleCase{msgs: w, deliver: make([]int, n), end: make([]int, n), outputs: make([][]model.Message, n), final: map[string]model.State{}}
	// Observed effects: a random serial order.
	perm := rapid.Permutation(seq(n)).Draw(t, "order")
	states := map[string]model.State{}
	for _, i := range perm {
		msg := w[i]
		st, ok := states[msg.Aggregate]
		if !ok {
			st = m.Initial(msg.Aggregate)
		}
		next, outs, err := m.Apply(st, msg)
		if err != nil {
			t.Fatalf("workload message rejected: %v", err)
		}
		states[msg.Aggregate] = next
		for j, o := range outs {
			c.outputs[i] = append(c.outputs[i], model.Message{ID: fmt.Sprintf("%s/%d", msg.ID, j), Aggregate: msg.Aggregate, Type: o.Type, Payload: o.Payload, Causation: msg.Key})
		}
	}
	for _, agg := range model.Workload(w).Aggregates() {
		c.final[agg] = states[agg]
	}
	// Corruptions.
	c.mutation = rapid.SampledFrom([]string{"none", "none", "drop-output", "double-output", "swap-outputs", "apply-twice", "drop-state", "aborted-output"}).Draw(t, "mutation")
	pick := rapid.IntRange(0, n-1).Draw(t, "victim")
	switch c.mutation {
	case "drop-output":
		if len(c.outputs[pick]) > 0 {
			c.outputs[pick] = c.outputs[pick][1:]
		}
	case "double-output":
		if len(c.outputs[pick]) > 0 {
			d := c.outputs[pick][0]
			d.ID += "-again"
			c.outputs[pick] = append(c.outputs[pick], d)
		}
	case "swap-outputs":
		other := rapid.IntRange(0, n-1).Draw(t, "other")
		c.outputs[pick], c.outputs[other] = c.outputs[other], c.outputs[pick]
		for _, i := range []int{pick, other} {
			for j := range c.outputs[i] {
				c.outputs[i][j].Causation = w[i].Key
			}
		}
	case "apply-twice":
		agg := w[pick].Aggregate
		if next, _, err := m.Apply(c.final[agg], w[pick]); err == nil {
			c.final[agg] = next
		}
	case "drop-state":
		agg := w[pick].Aggregate
		c.final[agg] = m.Initial(agg)
	case "aborted-output":
		// An attempt that never committed published what the message
		// would produce on the initial state.
		if _, outs, err := m.Apply(m.Initial(w[pick].Aggregate), w[pick]); err == nil && len(outs) > 0 {
			c.aborted = &model.Message{ID: w[pick].ID + "/ghost", Aggregate: w[pick].Aggregate, Type: outs[0].Type,
				Payload: outs[0].Payload, Causation: w[pick].Key}
			c.abortedOf = pick
		}
	}
	// Timing: 2n slots; each message gets a delivery slot and a later end
	// slot.
	slots := rapid.Permutation(seq(2*n)).Draw(t, "timing")
	for i := 0; i < n; i++ {
		a, b := slots[2*i], slots[2*i+1]
		c.deliver[i], c.end[i] = min(a, b), max(a, b)
	}
	c.history = buildOracleHistory(c)
	return c
}

// buildOracleHistory turns the case into events; a message's outputs are
// published just before its attempt ends. Steps are remapped, so deliver and
// end are rewritten to the event steps.
func buildOracleHistory(c *oracleCase) *histories.History {
	b := &builder{}
	for i := range c.msgs {
		m := c.msgs[i]
		b.add(histories.Event{Kind: histories.Send, Process: "sender", Message: &m})
	}
	n := len(c.msgs)
	deliverSlot, endSlot := append([]int(nil), c.deliver...), append([]int(nil), c.end...)
	for slot := 0; slot < 2*n; slot++ {
		for i := 0; i < n; i++ {
			m := c.msgs[i]
			switch slot {
			case deliverSlot[i]:
				b.add(histories.Event{Kind: histories.Deliver, Process: "consumer", Attempt: i + 1, Message: &m})
				c.deliver[i] = len(b.h.Events)
			case endSlot[i]:
				b.at(histories.Commit, i+1)
				for j := range c.outputs[i] {
					o := c.outputs[i][j]
					b.add(histories.Event{Kind: histories.Publish, Process: "consumer", Attempt: i + 1, Message: &o})
				}
				b.at(histories.Ack, i+1).at(histories.Done, i+1)
				c.end[i] = len(b.h.Events)
			}
		}
	}
	if c.aborted != nil {
		// The extra attempt runs entirely after the message's own attempt,
		// so it changes no real-time constraint.
		m := c.msgs[c.abortedOf]
		attempt := n + 1
		b.add(histories.Event{Kind: histories.Deliver, Process: "consumer", Attempt: attempt, Message: &m})
		b.add(histories.Event{Kind: histories.Write, Process: "consumer", Attempt: attempt})
		b.add(histories.Event{Kind: histories.Publish, Process: "consumer", Attempt: attempt, Message: c.aborted})
		b.add(histories.Event{Kind: histories.Crash, Process: "consumer", Attempt: attempt, Point: "before-commit"})
		c.outputs[c.abortedOf] = append(c.outputs[c.abortedOf], *c.aborted)
		c.end[c.abortedOf] = len(b.h.Events)
	}
	for _, agg := range model.Workload(c.msgs).Aggregates() {
		b.observe(agg, string(c.final[agg]))
	}
	return &b.h
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func TestCheckerAgreesWithBruteForce(t *testing.T) {
	verdicts := map[histories.Verdict]int{}
	models := []model.Model{model.Orders{}, model.Accounts{}, model.Profiles{}}
	rapid.Check(t, func(t *rapid.T) {
		m := rapid.SampledFrom(models).Draw(t, "model")
		c := genOracleCase(t, m)
		res, err := Check(c.history, m, Options{})
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		want := histories.Violation
		if oracle(m, c) {
			want = histories.Pass
		}
		verdicts[res.Verdict]++
		if res.Verdict != want {
			t.Fatalf("checker says %s, brute force says %s (mutation %s)\n%s", res.Verdict, want, c.mutation, timeline(c.history))
		}
		if want == histories.Violation && len(res.Findings) == 0 {
			t.Fatalf("violation without findings")
		}
		quick, err := Check(c.history, m, Options{VerdictOnly: true})
		if err != nil || quick.Verdict != want {
			t.Fatalf("the verdict-only check says %s (%v), brute force says %s", quick.Verdict, err, want)
		}
	})
	require.NotZero(t, verdicts[histories.Pass])
	require.NotZero(t, verdicts[histories.Violation])
}

func timeline(h *histories.History) string {
	s := ""
	for _, l := range h.Timeline() {
		s += l + "\n"
	}
	return s
}
