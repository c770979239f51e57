package campaign

// rapid offers no API for what a campaign needs of it: to draw the case of
// one seed (Example does, given the seed), and to shrink the failing case of
// one seed within a time budget (Check does, but it takes the seed, the
// number of checks and the budget from the testing flags, -rapid.seed and
// so on, process-wide). This file is the whole workaround: the flags are
// set under a lock, and Shrink rests on one assumption, pinned by
// TestExampleIsTheFirstCaseOfACheck: Check with -rapid.seed=N draws first
// the case that Example(N) returns. A rapid release that breaks it fails
// that test, not a shrink with "the run is not deterministic".

import (
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// rapidSettings guards rapid's process-wide settings: shrinkFrom changes
// them (exclusive), example reads them (shared).
var rapidSettings sync.RWMutex

// example returns the case of a seed: the same seed always gives the same
// case.
func example[T any](gen *rapid.Generator[T], seed uint64) T {
	// Example reads rapid's process-wide seed setting even when given a
	// seed, so it must not run while shrinkFrom changes the settings.
	rapidSettings.RLock()
	defer rapidSettings.RUnlock()
	return gen.Example(int(seed))
}

// shrinkFrom runs prop as rapid.Check would with -rapid.seed=seed and one
// check: it draws the case of seed first (see example) and, if prop fails,
// shrinks it for at most budget. The failures are prop's to record.
func shrinkFrom(seed uint64, budget time.Duration, prop func(*rapid.T)) error {
	rapidSettings.Lock()
	defer rapidSettings.Unlock()
	if err := prepareRapid(seed, budget); err != nil {
		return err
	}
	rapid.Check(&quietTB{}, prop)
	return nil
}

// prepareRapid points rapid's process-wide settings at one seed: one check,
// no fail files, the given shrink budget.
func prepareRapid(seed uint64, budget time.Duration) error {
	if flag.Lookup("test.short") == nil {
		testing.Init()
	}
	if !flag.Parsed() {
		if err := flag.CommandLine.Parse(nil); err != nil {
			return err
		}
	}
	checks := "1"
	if testing.Short() {
		checks = "5" // rapid divides the checks by 5 in -short mode
	}
	settings := [][2]string{
		{"rapid.seed", fmt.Sprint(seed)}, {"rapid.checks", checks}, {"rapid.nofailfile", "true"},
		{"rapid.shrinktime", budget.String()}, {"rapid.v", "false"}, {"rapid.failfile", ""},
	}
	for _, s := range settings {
		if err := flag.Set(s[0], s[1]); err != nil {
			return fmt.Errorf("configure rapid %s: %w", s[0], err)
		}
	}
	return nil
}

// quietTB receives rapid's reports during shrinking; the outcome is read
// from the property's own variables.
type quietTB struct{ failed bool }

func (*quietTB) Helper()                  {}
func (*quietTB) Name() string             { return "oncecheck" }
func (*quietTB) Logf(string, ...any)      {}
func (*quietTB) Log(...any)               {}
func (*quietTB) Skipf(string, ...any)     {}
func (*quietTB) Skip(...any)              {}
func (*quietTB) SkipNow()                 {}
func (tb *quietTB) Errorf(string, ...any) { tb.failed = true }
func (tb *quietTB) Error(...any)          { tb.failed = true }
func (tb *quietTB) Fatalf(string, ...any) { tb.failed = true }
func (tb *quietTB) Fatal(...any)          { tb.failed = true }
func (tb *quietTB) FailNow()              { tb.failed = true }
func (tb *quietTB) Fail()                 { tb.failed = true }
func (tb *quietTB) Failed() bool          { return tb.failed }
