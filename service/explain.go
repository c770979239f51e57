package service

import (
	"fmt"
	"strings"

	"github.com/oncecheck/oncecheck/histories"
)

// Struck lists where the faults of a service-mode history struck, one line
// per event a fault caused, as the proxies saw it: the step, the process
// and its attempt, and the event's detail, which for a fault at the
// PostgreSQL proxy names the statement and the connection ("step 12,
// consumer-2, attempt #2: SIGKILL: ...; the statement: INSERT INTO inbox
// ... (INSERT 0 1), its reply held, on db connection 1 of consumer-2,
// tx3").
func Struck(h *histories.History) []string {
	var out []string
	for _, ev := range h.Events {
		if ev.Fault == "" {
			continue
		}
		who := ev.Process
		if who == "" {
			who = "oncecheck"
		}
		if ev.Attempt > 0 {
			who += fmt.Sprintf(", attempt #%d", ev.Attempt)
		}
		what := ev.Detail
		if what == "" {
			what = strings.TrimPrefix(histories.Describe(ev), "!! ")
		}
		out = append(out, fmt.Sprintf("step %d, %s: %s", ev.Step, who, what))
	}
	return out
}
