package campaign

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/sim"
)

// newTesterID returns the prefix of a tester's run identities
// (sim.Config.RunID): unique in the process, so that the goroutines its
// runs leave behind can be told from those of other campaigns.
func newTesterID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// runID returns a fresh run identity for a run of seed: the tester's id,
// the seed and a counter, so that two runs of one case differ.
func (t *Tester) runID(seed uint64) string {
	return t.id + "/" + strconv.FormatUint(seed, 10) + "/" + strconv.FormatUint(t.runCount.Add(1), 10)
}

// Leftover counts the goroutines still alive that the tester's runs
// started (see sim.RunLabel): goroutines an adapter left behind, which it
// must not start. runs is how many runs left at least one.
func (t *Tester) Leftover() (goroutines, runs int) {
	return leftover(t.id + "/")
}

func leftover(prefix string) (goroutines, runs int) {
	for _, n := range sim.Goroutines(prefix) {
		goroutines += n
		runs++
	}
	return goroutines, runs
}

// diagnose says why two runs of the case of seed, first and second, gave
// different histories, as far as it can tell: goroutines left behind by
// its runs, state carried over from an earlier run (a third run agrees
// with the second), or runs that differ every time (a wall-clock read,
// global randomness).
func (t *Tester) diagnose(seed uint64, first, second *histories.History) string {
	step := histories.FirstDifference(first.Events, second.Events)
	what := fmt.Sprintf("seed %d run twice gave two different histories, first at step %d (%s; then %s)",
		seed, step, eventText(first, step), eventText(second, step))
	if n, _ := leftover(t.id + "/" + strconv.FormatUint(seed, 10) + "/"); n > 0 {
		return fmt.Sprintf("%s: goroutines still running after an attempt (its runs left %d behind), which act in later steps and runs; an adapter must not start goroutines", what, n)
	}
	third, _, err := t.execute(t.Generate(seed), seed, true)
	if err == nil && third.Hash() == second.Hash() {
		return what + ": state carried over from an earlier run (the runs after the first agree with each other, not with it); " +
			"nothing of the simulation outlives a run (the store and the cache are emptied, the handlers rebuilt), so the adapter keeps state of its own, such as a package-level variable: keep it in the store or in Env.Cache"
	}
	return what + ": the runs differ each time: the adapter reads the wall clock (use Env.Now) or global randomness (use Env.NewID), or depends on goroutine or map order"
}

// eventText describes the event of h at step (1-based), or its absence.
func eventText(h *histories.History, step int) string {
	if step < 1 || step > len(h.Events) {
		return "no event"
	}
	ev := h.Events[step-1]
	parts := []string{string(ev.Kind)}
	if ev.Process != "" {
		parts = append(parts, ev.Process)
	}
	if ev.Message != nil {
		parts = append(parts, ev.Message.ID)
	}
	if ev.Aggregate != "" {
		parts = append(parts, ev.Aggregate)
	}
	if ev.Detail != "" {
		parts = append(parts, ev.Detail)
	}
	return strings.Join(parts, " ")
}

// leftoverText reports the goroutines a campaign's runs left behind, or "".
func leftoverText(goroutines, runs, of int) string {
	if goroutines == 0 {
		return ""
	}
	return fmt.Sprintf("the adapter left %d goroutines running after its runs (%d of %d runs left some); an adapter must not start goroutines: they outlive the attempt a crash ends, act in later steps and runs, and pile up", goroutines, runs, of)
}
