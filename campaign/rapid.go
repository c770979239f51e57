package campaign

import (
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"
)

// rapidSettings guards rapid's process-wide settings: Shrink changes them
// (exclusive), Generate reads them (shared).
var rapidSettings sync.RWMutex

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
