package campaign

import (
	"context"
	"runtime"
	"slices"
	"sync"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/sim"
)

// ExhaustiveOptions configure the exhaustive small-scope mode.
type ExhaustiveOptions struct {
	// MaxMessages bounds the workloads (default 3).
	MaxMessages int
	// MaxFaults bounds the faults per schedule (0: fault-free schedules
	// only).
	MaxFaults int
	// Out is where the first violation is saved (default
	// "oncecheck-results").
	Out string
	// Parallel is the number of workloads explored at once (default: the
	// number of CPUs).
	Parallel int
	// Progress, when set, is called now and then with the counts so far.
	Progress func(ExhaustiveReport)
}

// ExhaustiveReport is the outcome of an exhaustive exploration.
type ExhaustiveReport struct {
	Verdict histories.Verdict
	// Workloads is the number of workload shapes explored.
	Workloads int
	// Schedules is the number of runs executed: one per fault placement
	// that was not pruned.
	Schedules int
	// Equivalent counts runs whose history (crash points aside) had been
	// seen already: they were not checked again and not extended.
	Equivalent int
	// Checked is the number of distinct histories checked.
	Checked int
	// First violation, the smallest found (fewest messages, then fewest
	// faults):
	History *histories.History
	Result  checkers.Result
	Path    string
	Reason  string
}

// Exhaustive enumerates every placement of up to MaxFaults faults (of the
// tester's kinds) over every workload shape of up to MaxMessages messages,
// like a model checker over real code, and stops at the first violation.
//
// Naive enumeration explodes (every fault kind at every delivery, boundary
// and publish, to the power of the number of faults); four reductions keep
// it small, none of which loses a behaviour:
//
//  1. Faults are placed only where a run offers them: each run reports the
//     opportunities it met (sim.Explore), and only those are tried, so no
//     fault is placed at a delivery that never happens, and a reorder,
//     a preemption or a rejected batch only where it changes something.
//  2. Each set of faults is built once, in the order the faults act: a
//     schedule is extended only with opportunities that come after its
//     last fault (the prefix up to that fault is the same run).
//  3. Runs whose histories are equal but for crash points (a crash after
//     the last write and one before the commit) are one schedule: the
//     simulation is deterministic, so their futures are equal; the
//     repeat is neither checked nor extended.
//  4. Workloads are enumerated up to renaming (see model.Enumerator), in
//     increasing size, and faults by increasing number, so the first
//     violation found is a smallest one.
func (t *Tester) Exhaustive(ctx context.Context, o ExhaustiveOptions) (ExhaustiveReport, error) {
	if t.cfg.FreeRunning {
		return ExhaustiveReport{}, configErrorf("FreeRunning", "exhaustive mode enumerates schedules: it needs the scheduler, not free-running consumers")
	}
	if o.MaxMessages <= 0 {
		o.MaxMessages = 3
	}
	if o.MaxFaults < 0 {
		o.MaxFaults = 0
	}
	if o.Out == "" {
		o.Out = "oncecheck-results"
	}
	rep := ExhaustiveReport{Verdict: histories.Pass}
	enum, ok := t.model.(model.Enumerator)
	if !ok {
		return rep, configErrorf("Model", "model %s cannot enumerate its workloads (it implements no model.Enumerator)", t.model.Name())
	}
	consumers := 1
	if slices.Contains(t.cfg.Faults, faults.Concurrent) {
		consumers = 2
	}
	shapes := enum.Shapes(o.MaxMessages)
	if len(shapes) == 0 {
		return rep, configErrorf("Model", "model %s lists no workload to enumerate (model.Typed: set its Messages)", t.model.Name())
	}
	parallel := o.Parallel
	if parallel <= 0 {
		parallel = runtime.NumCPU()
	}
	// Workloads are explored in chunks, in parallel; the first violation
	// in workload order wins, so the outcome does not depend on timing.
	for start := 0; start < len(shapes); start += parallel {
		chunk := shapes[start:min(start+parallel, len(shapes))]
		parts := make([]ExhaustiveReport, len(chunk))
		var wg sync.WaitGroup
		for i, w := range chunk {
			wg.Add(1)
			go func() {
				defer wg.Done()
				parts[i] = t.exploreWorkload(ctx, w, consumers, o.MaxFaults)
			}()
		}
		wg.Wait()
		for _, part := range parts {
			rep.Workloads++
			rep.Schedules += part.Schedules
			rep.Equivalent += part.Equivalent
			rep.Checked += part.Checked
			if part.Verdict == histories.Pass {
				continue
			}
			rep.Verdict, rep.History, rep.Result, rep.Reason = part.Verdict, part.History, part.Result, part.Reason
			if part.Verdict == histories.Violation {
				path, err := histories.Save(part.History, o.Out, "exhaustive-"+fileName(part.History, 0))
				if err != nil {
					return rep, err
				}
				rep.Path = path
			}
			return rep, nil
		}
		if o.Progress != nil {
			o.Progress(rep)
		}
		if ctx.Err() != nil {
			rep.Verdict, rep.Reason = histories.Inconclusive, "interrupted"
			return rep, nil
		}
	}
	return rep, nil
}

// exploreWorkload explores the fault placements over one workload, breadth
// first (fewest faults first), and stops at its first violation.
func (t *Tester) exploreWorkload(ctx context.Context, w model.Workload, consumers, maxFaults int) ExhaustiveReport {
	rep := ExhaustiveReport{Verdict: histories.Pass}
	type node struct {
		plan    faults.Plan
		after   sim.Opportunity // extensions must come after this one
		isEmpty bool
	}
	seen := map[string]bool{}
	level := []node{{plan: faults.Plan{Consumers: consumers}, isEmpty: true}}
	for depth := 0; depth <= maxFaults && len(level) > 0; depth++ {
		var next []node
		for _, n := range level {
			if ctx.Err() != nil {
				rep.Verdict, rep.Reason = histories.Inconclusive, "interrupted"
				return rep
			}
			c := Case{Workload: w, Plan: n.plan}
			var opps []sim.Opportunity
			events, err := t.simulate(sim.Config{Model: t.model, Strategy: t.cfg.Strategy, Workload: w, Plan: n.plan, Explore: t.cfg.Faults,
				LateDelays:   faults.LateDelays(t.cfg.Strategy.Windows, t.cfg.MaxDelay),
				ReadsPreempt: !t.cfg.ReadsNotPreempted, Format12: t.cfg.Format12, Broker: t.cfg.Broker}, &opps)
			rep.Schedules++
			h := &histories.History{Header: t.header(c, 0), Events: events}
			if err != nil {
				rep.Verdict, rep.Reason, rep.History = histories.Inconclusive, err.Error(), h
				return rep
			}
			key := h.CanonicalHash()
			if seen[key] {
				rep.Equivalent++
				continue
			}
			seen[key] = true
			res, err := checkers.Check(h, t.model, checkers.Options{Downstream: t.cfg.Downstream, Timeout: t.cfg.CheckTimeout})
			rep.Checked++
			if err != nil {
				rep.Verdict, rep.Reason, rep.History = histories.Inconclusive, err.Error(), h
				return rep
			}
			if res.Verdict != histories.Pass {
				h.Header.Verdict, h.Header.Anomalies = res.Verdict, res.Anomalies
				rep.Verdict, rep.History, rep.Result, rep.Reason = res.Verdict, h, res, res.Reason
				return rep
			}
			if depth == maxFaults {
				continue
			}
			for _, op := range opps {
				if !n.isEmpty && (op.Step < n.after.Step || op.Step == n.after.Step && op.Seq <= n.after.Seq) {
					continue
				}
				p := n.plan
				p.Faults = append(slices.Clone(p.Faults), op.Fault)
				if op.Fault.Kind == faults.Redelivery && op.Fault.Variant == faults.LeaseExpired {
					// As generated plans: an expired lease hands the copy
					// to another consumer while the first works on it.
					p.Consumers = max(p.Consumers, 2)
				}
				next = append(next, node{plan: p, after: op})
			}
		}
		level = next
	}
	return rep
}
