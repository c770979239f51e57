package campaign

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

// SearchOptions configure a campaign of runs.
type SearchOptions struct {
	// Runs is the number of runs (default 100).
	Runs int
	// Seed is the campaign's seed: run i uses seed Seed+i.
	Seed uint64
	// Out is the directory for saved histories (default "oncecheck-results").
	Out string
	// KeepAll saves every history, not only failures.
	KeepAll bool
	// ShrinkTime bounds shrinking (default 20s).
	ShrinkTime time.Duration
	// NoShrink saves the first failing run as found.
	NoShrink bool
	// Parallel is the number of runs executed at once (default 1). The
	// outcome is that of a serial search: runs are taken in seed order.
	Parallel int
	// CheckDeterminism runs every case twice and compares the histories;
	// a difference makes the campaign inconclusive, with the seed and the
	// first differing step.
	CheckDeterminism bool
	// Progress, when set, is called after each run.
	Progress func(done, total int)
}

// Report is the outcome of a campaign.
type Report struct {
	Config  Config
	Seed    uint64
	Verdict histories.Verdict
	// Runs is the number of runs executed.
	Runs int
	// Injected counts, per fault kind, the faults that took effect across
	// the runs (a planned fault whose moment never comes does not count).
	Injected map[faults.Kind]int
	// Inconclusive counts runs whose outcome could not be decided.
	Inconclusive int
	// Reason says why the campaign is inconclusive.
	Reason string
	// DeterminismChecked says every run was executed twice with identical
	// histories.
	DeterminismChecked bool
	// NotDeterministic, when set, says why the campaign stopped without a
	// verdict: a case run twice (the first case always, and a failing case
	// before it is reported) gave two histories, so no counterexample could
	// be trusted. The verdict is then inconclusive.
	NotDeterministic string
	// Goroutines counts the goroutines the adapter left running after the
	// campaign's runs, and GoroutineRuns the runs that left some (see
	// sim.RunLabel); LeftoverText says so in words ("" when none).
	Goroutines, GoroutineRuns int
	LeftoverText              string

	// The first failure, when Verdict is Violation:
	RunsToFailure int                // runs up to and including the failing one
	FailingSeed   uint64             // the seed of the failing run
	Original      *histories.History // the failing run as found
	Minimal       *histories.History // after shrinking
	Result        checkers.Result    // the minimal history's check
	Path          string             // where Minimal was saved
	ShrinkError   error              // why shrinking failed, if it did
	SaveError     error              // why Minimal could not be saved in Out (Path is then the fallback's, or empty)
	// TimeToFailure is the wall time from the campaign's start to the
	// failing run's verdict; ShrinkTime is the time shrinking took.
	TimeToFailure, ShrinkTime time.Duration
}

// Search runs up to o.Runs cases, stops at the first violation, shrinks it,
// and saves the minimal history. A cancelled ctx stops the campaign after
// the current run; the report covers the runs done.
func (t *Tester) Search(ctx context.Context, o SearchOptions) (Report, error) {
	if o.Runs <= 0 {
		o.Runs = 100
	}
	if o.Out == "" {
		o.Out = "oncecheck-results"
	}
	if o.ShrinkTime == 0 {
		o.ShrinkTime = 20 * time.Second
	}
	if o.CheckDeterminism && t.cfg.FreeRunning {
		return Report{}, configErrorf("CheckDeterminism", "a free-running run is not deterministic: checking determinism needs the scheduler")
	}
	if err := writable(o.Out); err != nil {
		return Report{}, err
	}
	rep := Report{Config: t.cfg, Seed: o.Seed, Verdict: histories.Pass, Injected: map[faults.Kind]int{}}
	started := time.Now()
	next, stop := t.outcomes(o)
	defer stop()
	for i := 0; i < o.Runs; i++ {
		if ctx.Err() != nil {
			break
		}
		out := next()
		seed, h, res, err := out.seed, out.h, out.res, out.err
		if out.nondeterministic != nil {
			rep.Runs++
			rep.Verdict, rep.Inconclusive = histories.Inconclusive, rep.Inconclusive+1
			rep.NotDeterministic = t.diagnose(seed, h, out.nondeterministic)
			rep.Reason = "not deterministic: " + rep.NotDeterministic
			t.countLeftover(&rep)
			return rep, nil
		}
		for k, n := range h.InjectedFaults() {
			rep.Injected[faults.Kind(k)] += n
		}
		rep.Runs++
		if o.Progress != nil {
			o.Progress(rep.Runs, o.Runs)
		}
		if o.KeepAll {
			if _, serr := histories.Save(h, o.Out, fileName(h, seed)); serr != nil {
				return rep, serr
			}
		}
		if err != nil || res.Verdict == histories.Inconclusive {
			rep.Inconclusive++
			if rep.Reason == "" {
				rep.Reason = fmt.Sprintf("run with seed %d: %s", seed, res.Reason)
			}
			if err != nil {
				// The infrastructure failed: later runs would too.
				rep.Verdict = histories.Inconclusive
				return rep, nil
			}
			continue
		}
		if res.Verdict != histories.Violation {
			if !o.KeepAll {
				t.recycle(h)
			}
			continue
		}
		rep.Verdict = histories.Violation
		rep.RunsToFailure, rep.FailingSeed, rep.Original = rep.Runs, seed, h
		rep.Minimal, rep.Result = h, res
		rep.TimeToFailure = time.Since(started)
		if !o.NoShrink {
			shrinkStart := time.Now()
			if min, minRes, err := t.Shrink(seed, res.Primary(), o.ShrinkTime); err != nil {
				rep.ShrinkError = err
			} else {
				rep.Minimal, rep.Result = min, minRes
			}
			rep.ShrinkTime = time.Since(shrinkStart)
		}
		// A failure to save loses no finding: the report has it all, and
		// the history goes to the fallback directory.
		rep.Path, rep.SaveError = save(rep.Minimal, o.Out, fileName(rep.Minimal, seed))
		t.countLeftover(&rep)
		return rep, nil
	}
	if rep.Inconclusive > 0 {
		rep.Verdict = histories.Inconclusive
	}
	rep.DeterminismChecked = o.CheckDeterminism
	t.countLeftover(&rep)
	return rep, nil
}

// writable checks, before a campaign, that its histories can be saved in
// dir: an existing directory takes a file, or the nearest existing
// ancestor of a missing one takes a directory. It leaves nothing behind:
// the directory is made when a history is saved.
func writable(dir string) error {
	removeStale(dir)
	probe := dir
	for {
		info, err := os.Stat(probe)
		if err == nil && !info.IsDir() {
			return configErrorf("Out", "cannot save histories there: %s is not a directory", probe)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(probe) == probe {
			return configErrorf("Out", "cannot save histories there: %v", err)
		}
		probe = filepath.Dir(probe)
	}
	made, err := os.MkdirTemp(probe, ".oncecheck-probe-")
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(made, "probe"); err == nil {
			err = f.Close()
		}
	}
	if rerr := os.RemoveAll(made); err == nil && made != "" {
		err = rerr
	}
	if err != nil {
		return configErrorf("Out", "cannot save histories there: %v", err)
	}
	return nil
}

// removeStale removes the temporary files a process killed while saving
// left in dir (histories.Save's ".tmp-*"), once they are a minute old: a
// live writer's file is younger.
func removeStale(dir string) {
	matches, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, m := range matches {
		if info, err := os.Lstat(m); err == nil && info.Mode().IsRegular() && time.Since(info.ModTime()) > time.Minute {
			_ = os.Remove(m)
		}
	}
}

// FallbackDir is where a counterexample that cannot be saved in its
// results directory (read-only, full, not a directory) is saved instead.
func FallbackDir() string { return filepath.Join(os.TempDir(), "oncecheck-results") }

// save saves h in dir, or else in FallbackDir: the path is where it went,
// the error why dir did not take it.
func save(h *histories.History, dir, name string) (string, error) {
	path, err := histories.Save(h, dir, name)
	if err == nil {
		return path, nil
	}
	if fallback, ferr := histories.Save(h, FallbackDir(), name); ferr == nil {
		return fallback, err
	}
	return "", err
}

func fileName(h *histories.History, seed uint64) string {
	outcome := string(h.Header.Verdict)
	if len(h.Header.Anomalies) > 0 {
		outcome = string(h.Header.Anomalies[0])
	}
	if outcome == "" {
		outcome = "unknown"
	}
	names := make([]string, len(h.Header.Faults))
	for i, k := range h.Header.Faults {
		names[i] = string(k)
	}
	kinds := strings.Join(names, "+")
	if len(h.Header.Faults) == len(faults.AllKinds) {
		kinds = "all"
	}
	backend := h.Header.Backend
	if backend == "" {
		backend = "mem"
	}
	return fmt.Sprintf("%s-%s-%s-%s-%s-%d.jsonl", h.Header.Strategy, h.Header.Model, kinds, outcome, backend, seed)
}

// outcome is what one run gave.
type outcome struct {
	seed             uint64
	h                *histories.History
	res              checkers.Result
	err              error
	nondeterministic *histories.History // the second history, when it differs
}

// countLeftover records in rep the goroutines the tester's runs left.
func (t *Tester) countLeftover(rep *Report) {
	if t.cfg.FreeRunning {
		return // its goroutines are the harness's until they end
	}
	rep.Goroutines, rep.GoroutineRuns = t.Leftover()
	rep.LeftoverText = leftoverText(rep.Goroutines, rep.GoroutineRuns, rep.Runs)
}

// runOne runs the case of a seed. Its check decides the verdict only; a
// run that fails is judged again, fully, for its explanation: a campaign
// explains one run, not every run. With checkDeterminism, and always for a
// run that fails (on the scheduler), the case runs a second time: a
// counterexample is reported only if it reproduces event for event.
func (t *Tester) runOne(seed uint64, checkDeterminism bool) outcome {
	c := t.Generate(seed)
	h, res, err := t.execute(c, seed, true)
	if err == nil && res.Verdict == histories.Violation {
		res, err = t.judge(h, t.model, false)
		checkDeterminism = checkDeterminism || !t.cfg.FreeRunning
	}
	out := outcome{seed: seed, h: h, res: res, err: err}
	if checkDeterminism && err == nil {
		again, _, err2 := t.execute(c, seed, true)
		if err2 != nil || again.Hash() != h.Hash() {
			out.nondeterministic = again
		} else {
			t.recycle(again)
		}
	}
	return out
}

// outcomes returns the runs' outcomes in seed order, computed by
// o.Parallel workers ahead of the consumer (at most a window of runs
// ahead), and a function that stops the workers.
func (t *Tester) outcomes(o SearchOptions) (next func() outcome, stop func()) {
	seedOf := func(i int) uint64 { return o.Seed + uint64(i) }
	if o.Parallel <= 1 {
		i := 0
		return func() outcome {
			out := t.runOne(seedOf(i), o.CheckDeterminism || i == 0 && !t.cfg.FreeRunning)
			i++
			return out
		}, func() {}
	}
	type indexed struct {
		i   int
		out outcome
	}
	window := 4 * o.Parallel
	done := make(chan struct{})
	tokens := make(chan struct{}, window)
	indexes := make(chan int)
	results := make(chan indexed, window)
	var wg sync.WaitGroup
	go func() {
		defer close(indexes)
		for i := 0; i < o.Runs; i++ {
			select {
			case tokens <- struct{}{}:
			case <-done:
				return
			}
			select {
			case indexes <- i:
			case <-done:
				return
			}
		}
	}()
	for range o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range indexes {
				out := t.runOne(seedOf(i), o.CheckDeterminism || i == 0 && !t.cfg.FreeRunning)
				select {
				case results <- indexed{i, out}:
				case <-done:
					return
				}
			}
		}()
	}
	pending := map[int]outcome{}
	want := 0
	next = func() outcome {
		for {
			if out, ok := pending[want]; ok {
				delete(pending, want)
				want++
				<-tokens
				return out
			}
			r := <-results
			pending[r.i] = r.out
		}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
	return next, stop
}
