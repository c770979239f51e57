package service

import (
	"bytes"
	"context"
	"fmt"
	"regexp"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/report"
)

// TB is the part of testing.TB that Verify uses; *testing.T is one.
type TB interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
}

// VerifyOptions say how many runs Verify makes and where a failure goes.
type VerifyOptions struct {
	// Runs is the number of runs (0: 20); run i uses Seed+i (Seed 0: 1).
	Runs int
	Seed uint64
	// ShrinkTries is how many runs of each smaller case shrinking makes
	// (0: 3; negative: no shrinking).
	ShrinkTries int
	// Out is where a failing history is saved ("": not saved).
	Out string
}

// Verify runs the service of cfg in service mode from go test: it fails
// t with the explanation of the first violation, shrunk, and says where
// its history was saved. It is the service-mode counterpart of
// oncecheck.Verify (which runs a handler in the simulation); it lives
// here so that a program verifying in memory does not link the broker.
func Verify(t TB, cfg Config, o VerifyOptions) {
	t.Helper()
	if o.Runs <= 0 {
		o.Runs = 20
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.ShrinkTries == 0 {
		o.ShrinkTries = 3
	}
	r, err := New(cfg)
	if err != nil {
		t.Errorf("service mode: %v", err)
		return
	}
	defer r.Close()
	ctx := context.Background()
	for i := range o.Runs {
		seed := o.Seed + uint64(i)
		c := r.Generate(seed)
		h, res, err := r.Run(ctx, c, seed)
		if err != nil {
			t.Errorf("service mode, seed %d: %v", seed, err)
			return
		}
		if res.Verdict == histories.Pass {
			continue
		}
		if o.ShrinkTries > 0 && res.Verdict == histories.Violation {
			if c, h, res, _, err = r.Shrink(ctx, c, h, res, o.ShrinkTries); err != nil {
				t.Errorf("service mode, seed %d: shrink: %v", seed, err)
				return
			}
		}
		h.Header.Seed = seed
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s at run %d (seed %d)\n", report.VerdictLine(res), i+1, seed)
		for _, f := range c.Plan.Faults {
			fmt.Fprintf(&b, "  - %s\n", Describe(f))
		}
		if lines := Struck(h); len(lines) > 0 {
			fmt.Fprintln(&b, "Where they struck:")
			for _, l := range lines {
				fmt.Fprintf(&b, "  - %s\n", l)
			}
		}
		if err := report.Explanation(&b, h, res); err != nil {
			fmt.Fprintf(&b, "(no explanation: %v)\n", err)
		}
		if o.Out != "" {
			name := fileName.ReplaceAllString(t.Name(), "_") + fmt.Sprintf("-seed%d.jsonl", seed)
			if path, err := histories.Save(h, o.Out, name); err != nil {
				fmt.Fprintf(&b, "not saved: %v\n", err)
			} else {
				fmt.Fprintf(&b, "saved: %s\n", path)
			}
		}
		t.Errorf("%s", b.String())
		return
	}
	t.Logf("service mode: %d runs passed (seeds %d-%d)", o.Runs, o.Seed, o.Seed+uint64(o.Runs)-1)
}

var fileName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
