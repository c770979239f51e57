package service

import (
	"context"
	"slices"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

// Reproduce runs case c n times and counts the runs whose result has the
// signature given (checkers.Result.Signature): a service's runs are not
// deterministic, and this is how often a failure comes back.
func (r *Runner) Reproduce(ctx context.Context, c Case, signature string, n int) (int, error) {
	same := 0
	for range n {
		_, res, err := r.Run(ctx, c, 0)
		if err != nil {
			return same, err
		}
		if res.Signature() == signature {
			same++
		}
	}
	return same, nil
}

// Shrink makes a failing case smaller: it removes one fault, or one
// message, at a time, and keeps the smaller case when one of up to tries
// runs of it still shows anomaly as its primary anomaly; it stops when no
// removal keeps the failure. It returns the smallest case, the history and
// result of its failing run, and how many runs it took.
func (r *Runner) Shrink(ctx context.Context, c Case, h *histories.History, res checkers.Result, tries int) (Case, *histories.History, checkers.Result, int, error) {
	anomaly := res.Primary()
	runs := 0
	fails := func(cand Case) (bool, error) {
		for range tries {
			runs++
			ch, cres, err := r.Run(ctx, cand, 0)
			if err != nil {
				return false, err
			}
			if cres.Verdict == histories.Violation && cres.Primary() == anomaly {
				h, res = ch, cres
				return true, nil
			}
		}
		return false, nil
	}
	for changed := true; changed; {
		changed = false
		for _, cand := range smaller(c) {
			ok, err := fails(cand)
			if err != nil {
				return c, h, res, runs, err
			}
			if ok {
				c, changed = cand, true
				break
			}
		}
	}
	return c, h, res, runs, nil
}

// smaller lists the cases with one fault or one message less, faults
// first.
func smaller(c Case) []Case {
	var out []Case
	for i := range c.Plan.Faults {
		d := c
		d.Plan.Faults = slices.Delete(slices.Clone(c.Plan.Faults), i, i+1)
		out = append(out, d)
	}
	if len(c.Workload) < 2 {
		return out
	}
	for j := range c.Workload {
		d := c
		w := slices.Delete(slices.Clone(c.Workload), j, j+1)
		d.Workload = w.Number()
		d.Plan.Faults = nil
		for _, f := range c.Plan.Faults {
			if f.Kind == faults.Reissue {
				switch {
				case f.Index == j:
					continue
				case f.Index > j:
					f.Index--
				}
			}
			d.Plan.Faults = append(d.Plan.Faults, f)
		}
		out = append(out, d)
	}
	return out
}
