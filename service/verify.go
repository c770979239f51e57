package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/oncecheck/oncecheck/checkers"
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
	// Parallel is how many runs go at once, each on a runner of its own
	// with its own embedded broker (0: 1). The runs and their verdicts
	// are the same; the failure reported is the one of the lowest seed.
	Parallel int
	// ShrinkTries is how many runs of each smaller case shrinking makes
	// (0: 3; negative: no shrinking).
	ShrinkTries int
	// Out is where a failing history is saved ("": not saved).
	Out string
	// GoPackage is a Go main package (a path go build takes, such as "."
	// or "./cmd/orders") that Verify builds once, into a temporary
	// directory, and runs as the service: it is the command when
	// Config.Command is empty. A build that fails fails the test with the
	// compiler's errors.
	GoPackage string
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
	ctx := context.Background()
	if o.GoPackage != "" {
		dir, err := os.MkdirTemp("", "oncecheck-build-*")
		if err != nil {
			t.Errorf("service mode: %v", err)
			return
		}
		defer os.RemoveAll(dir)
		bin, err := BuildGo(ctx, o.GoPackage, dir)
		if err != nil {
			t.Errorf("service mode: %v", err)
			return
		}
		if cfg.Command == "" {
			cfg.Command = "exec " + shellQuote(bin)
		}
	}
	runners, err := NewRunners(cfg, max(o.Parallel, 1))
	if err != nil {
		t.Errorf("service mode: %v", err)
		return
	}
	defer CloseRunners(runners)
	f, err := RunSeeds(ctx, runners, o.Seed, o.Runs)
	if err != nil {
		t.Errorf("service mode: %v", err)
		return
	}
	if f == nil {
		t.Logf("service mode: %d runs passed (seeds %d-%d)", o.Runs, o.Seed, o.Seed+uint64(o.Runs)-1)
		return
	}
	c, h, res, seed := f.Case, f.History, f.Result, f.Seed
	if o.ShrinkTries > 0 && res.Verdict == histories.Violation {
		if c, h, res, _, err = f.Runner.Shrink(ctx, c, h, res, o.ShrinkTries); err != nil {
			t.Errorf("service mode, seed %d: shrink: %v", seed, err)
			return
		}
	}
	h.Header.Seed = seed
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s at run %d (seed %d)\n", report.VerdictLine(res), f.Index+1, seed)
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
}

var fileName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// BuildGo builds the Go main package pkg into dir and returns the
// binary's path; the error of a failed build carries the compiler's
// output. A pkg that is a directory is built there, in its own module;
// another (an import path) is built from the current directory.
func BuildGo(ctx context.Context, pkg, dir string) (string, error) {
	bin, err := filepath.Abs(filepath.Join(dir, "service"))
	if err != nil {
		return "", fmt.Errorf("service: build %s: %w", pkg, err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	if st, err := os.Stat(pkg); err == nil && st.IsDir() {
		cmd = exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
		cmd.Dir = pkg
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("service: go build %s: %w\n%s", pkg, err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// NewRunners starts n runners of cfg, each with a broker of its own, for
// RunSeeds; CloseRunners closes them.
func NewRunners(cfg Config, n int) ([]*Runner, error) {
	var rs []*Runner
	for range max(n, 1) {
		r, err := New(cfg)
		if err != nil {
			CloseRunners(rs)
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// CloseRunners closes every runner.
func CloseRunners(rs []*Runner) {
	for _, r := range rs {
		_ = r.Close()
	}
}

// SumTimings sums the timings of runners.
func SumTimings(rs []*Runner) Timings {
	var t Timings
	for _, r := range rs {
		u := r.Timings()
		t.Runs += u.Runs
		t.Schema += u.Schema
		t.Setup += u.Setup
		t.Start += u.Start
		t.Work += u.Work
		t.Drain += u.Drain
		t.Teardown += u.Teardown
		t.Check += u.Check
	}
	return t
}

// Failure is a run that did not pass: its index among the runs, its seed,
// case, history and result, and the runner it ran on (to shrink it on).
type Failure struct {
	Index   int
	Seed    uint64
	Case    Case
	History *histories.History
	Result  checkers.Result
	Runner  *Runner
}

// RunSeeds runs the cases of seeds first, first+1, ... (n runs), as many
// at once as there are runners, and returns the run that did not pass
// with the lowest seed, or nil when every run passed. Once a run fails,
// no run of a higher seed is started; those of lower seeds finish, so the
// failure returned is the first in seed order, as one runner would find
// it. A harness error stops the runs and is returned, with its seed.
func RunSeeds(ctx context.Context, runners []*Runner, first uint64, n int) (*Failure, error) {
	if len(runners) == 0 {
		return nil, errors.New("service: no runner")
	}
	var (
		mu      sync.Mutex
		next    int
		stop    = n // no run at or after this index starts
		fail    *Failure
		firstEr error
		erAt    = n
		wg      sync.WaitGroup
	)
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				if i >= stop || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				seed := first + uint64(i)
				c := r.Generate(seed)
				h, res, err := r.Run(ctx, c, seed)
				mu.Lock()
				switch {
				case err != nil:
					if i < erAt {
						erAt, firstEr = i, fmt.Errorf("run %d (seed %d): %w", i+1, seed, err)
					}
					stop = min(stop, i)
				case res.Verdict != histories.Pass:
					h.Header.Seed = seed
					if fail == nil || i < fail.Index {
						fail = &Failure{Index: i, Seed: seed, Case: c, History: h, Result: res, Runner: r}
					}
					stop = min(stop, i+1)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fail, err
	}
	if firstEr != nil && (fail == nil || erAt < fail.Index) {
		return nil, firstEr
	}
	return fail, nil
}
