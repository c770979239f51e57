// Package report renders a history and its check for people: a text
// timeline with one lane per process (oncecheck show), and a self-contained
// HTML page with the verdict, the explanation, the lanes and porcupine's
// visualization of the partitions (oncecheck show --html).
package report

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
)

// Cell is one event placed in its lane.
type Cell struct {
	Step  int
	Lane  int
	Scope string
	Text  string
	Fault bool
}

// Lanes returns the processes of a history, one lane each (the sender
// first, then consumers and dispatchers in order of appearance, then the
// broker and the observer), and one cell per event.
func Lanes(h *histories.History) ([]string, []Cell) {
	var procs []string
	seen := map[string]bool{}
	for _, ev := range h.Events {
		p := laneOf(ev)
		if !seen[p] {
			seen[p] = true
			procs = append(procs, p)
		}
	}
	rank := func(p string) int {
		switch {
		case p == "sender":
			return 0
		case strings.HasPrefix(p, "consumer"):
			return 1
		case strings.HasPrefix(p, "dispatcher"):
			return 2
		case p == "broker":
			return 3
		case p == "observer":
			return 4
		}
		return 5
	}
	slices.SortStableFunc(procs, func(a, b string) int { return rank(a) - rank(b) })
	index := map[string]int{}
	for i, p := range procs {
		index[p] = i
	}
	cells := make([]Cell, len(h.Events))
	for i, ev := range h.Events {
		text := histories.Describe(ev)
		cells[i] = Cell{Step: ev.Step, Lane: index[laneOf(ev)], Scope: histories.Scope(ev),
			Text: strings.TrimPrefix(text, "!! "), Fault: ev.Fault != "" || strings.HasPrefix(text, "!!")}
	}
	return procs, cells
}

func laneOf(ev histories.Event) string {
	if ev.Process == "" {
		return "history"
	}
	return ev.Process
}

// laneWidth is the width of one lane in the text timeline.
const laneWidth = 34

// Text writes the verdict, the explanation and the timeline in lanes.
func Text(w io.Writer, name string, h *histories.History, res checkers.Result) error {
	ew := &errWriter{w: w}
	hd := h.Header
	ew.printf("%s\n  strategy %s, model %s, backend %s, seed %d, saved by oncecheck %s (format %s)\n",
		name, hd.Strategy, hd.Model, hd.Backend, hd.Seed, hd.Tool, hd.Version)
	ew.printf("verdict: %s\n", verdictLine(res))
	for _, f := range res.Findings {
		ew.printf("  %s: %s\n", f.Anomaly, f.Text)
		if f.Evidence != "" {
			ew.printf("    evidence: %s\n", f.Evidence)
		}
	}
	for _, l := range res.Expected {
		ew.printf("  %s\n", l)
	}
	ew.printf("workload:\n")
	for _, m := range hd.Workload {
		ew.printf("  %s  id=%s  %s to %s\n", m.Key, m.ID, m.Output(), m.Aggregate)
	}
	ew.printf("faults:\n")
	for _, f := range hd.Plan.Faults {
		ew.printf("  %s\n", f)
	}
	if len(hd.Plan.Faults) == 0 {
		ew.printf("  none\n")
	}
	procs, cells := Lanes(h)
	ew.printf("\ntimeline (one lane per process; !! marks a fault):\n")
	header := fmt.Sprintf("%5s ", "step")
	for _, p := range procs {
		header += fmt.Sprintf("| %-*s", laneWidth, p)
	}
	ew.printf("%s\n", strings.TrimRight(header, " "))
	for _, c := range cells {
		line := fmt.Sprintf("%5d ", c.Step)
		for i := range procs {
			text := ""
			if i == c.Lane {
				text = c.Text
				if c.Scope != "" {
					text = c.Scope + " " + text
				}
				if c.Fault {
					text = "!! " + text
				}
				if len(text) > laneWidth {
					text = text[:laneWidth-1] + "…"
				}
			}
			line += fmt.Sprintf("| %-*s", laneWidth, text)
		}
		ew.printf("%s\n", strings.TrimRight(line, " "))
	}
	return ew.err
}

func verdictLine(res checkers.Result) string {
	switch res.Verdict {
	case histories.Pass:
		return "PASS"
	case histories.Inconclusive:
		return "INCONCLUSIVE: " + res.Reason
	}
	names := make([]string, len(res.Anomalies))
	for i, a := range res.Anomalies {
		names[i] = string(a)
	}
	return "VIOLATION: " + strings.Join(names, ", ")
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
