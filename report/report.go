// Package report renders a history and its check for people, in one place
// for every front end: the explanation of a failure (Explanation, which the
// command line and Verify print), a text page with the timeline in lanes,
// one per process (Text), and a self-contained HTML page with the verdict,
// the explanation, the lanes and porcupine's visualization of the
// partitions (HTML).
package report

import (
	"bytes"
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
	procs, index, _ := lanes(h)
	cells := make([]Cell, len(h.Events))
	for i, ev := range h.Events {
		cells[i] = cell(ev, index)
	}
	return procs, cells
}

// lanes reads the events once and returns their processes in lane order,
// each one's lane, and the number of events.
func lanes(events histories.Stream) ([]string, map[string]int, error) {
	var procs []string
	seen := map[string]bool{}
	err := events.Each(func(ev *histories.Event) error {
		p := laneOf(*ev)
		if !seen[p] {
			seen[p] = true
			procs = append(procs, p)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
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
	return procs, index, nil
}

// cell places one event in its lane.
func cell(ev histories.Event, index map[string]int) Cell {
	text := histories.Describe(ev)
	return Cell{Step: ev.Step, Lane: index[laneOf(ev)], Scope: histories.Scope(ev),
		Text: strings.TrimPrefix(text, "!! "), Fault: ev.Fault != "" || strings.HasPrefix(text, "!!")}
}

func laneOf(ev histories.Event) string {
	if ev.Process == "" {
		return "history"
	}
	return ev.Process
}

// laneWidth is the width of one lane in the text timeline.
const laneWidth = 34

// Text writes what oncecheck show prints: the history's header, the
// verdict, the explanation and the timeline in lanes.
func Text(w io.Writer, name string, h *histories.History, res checkers.Result) error {
	return TextStream(w, name, h.Header, h, res)
}

// TextStream is Text on a history given as its header and its events, read
// in two passes (one for the lanes, one for the timeline) and never held:
// a *histories.File of millions of events is shown in the memory of one.
// Its output is Text's. Lines are written in chunks that end at a line's
// end; an error of events (a file that changed) stops it and is returned.
func TextStream(w io.Writer, name string, hd histories.Header, events histories.Stream, res checkers.Result) error {
	bw := &lineBuffer{w: w}
	ew := &errWriter{w: bw}
	ew.printf("%s\n  strategy %s, model %s, backend %s, seed %d, saved by oncecheck %s (format %s)\n",
		name, hd.Strategy, hd.Model, hd.Backend, hd.Seed, hd.Tool, hd.Version)
	ew.printf("verdict: %s\n", VerdictLine(res))
	explain(ew, hd, nil, res)
	if ew.err != nil {
		return ew.err
	}
	procs, index, err := lanes(events)
	if err != nil {
		return err
	}
	ew.printf("\nTimeline (one lane per process; !! marks a fault):\n")
	header := fmt.Sprintf("%5s ", "step")
	for _, p := range procs {
		header += fmt.Sprintf("| %-*s", laneWidth, p)
	}
	ew.printf("%s\n", strings.TrimRight(header, " "))
	var line strings.Builder
	err = events.Each(func(ev *histories.Event) error {
		c := cell(*ev, index)
		line.Reset()
		fmt.Fprintf(&line, "%5d ", c.Step)
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
			fmt.Fprintf(&line, "| %-*s", laneWidth, text)
		}
		ew.printf("%s\n", strings.TrimRight(line.String(), " "))
		return ew.err
	})
	if err != nil {
		return err
	}
	return bw.flush()
}

// lineBuffer gathers whole lines and writes them in chunks of about
// 32 KiB, each ending at a line's end (a filter downstream sees no line
// or character cut in two), and fewer writes for a long timeline.
type lineBuffer struct {
	w   io.Writer
	buf []byte
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) >= 32<<10 {
		if end := bytes.LastIndexByte(b.buf, '\n'); end >= 0 {
			if _, err := b.w.Write(b.buf[:end+1]); err != nil {
				return 0, err
			}
			b.buf = append(b.buf[:0], b.buf[end+1:]...)
		}
	}
	return len(p), nil
}

func (b *lineBuffer) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Explanation writes what a person needs to understand a failing history:
// the findings with their evidence, the workload, the faults, the closest
// exactly-once execution and the timeline, one event per line. The command
// line and Verify print it; Text prints the same with the timeline in
// lanes.
func Explanation(w io.Writer, h *histories.History, res checkers.Result) error {
	ew := &errWriter{w: w}
	explain(ew, h.Header, h, res)
	return ew.err
}

// explain writes the explanation of a result, with the timeline one event
// per line when h is not nil.
func explain(ew *errWriter, hd histories.Header, h *histories.History, res checkers.Result) {
	if len(res.Findings) > 0 {
		ew.printf("\nWhat went wrong:\n")
	}
	for _, f := range res.Findings {
		ew.printf("  %s: %s\n", f.Anomaly, f.Text)
		if f.Evidence != "" {
			ew.printf("    evidence: %s\n", f.Evidence)
		}
	}
	ew.printf("\nWorkload (%s):\n", Plural(len(hd.Workload), "logical message"))
	for _, m := range hd.Workload {
		ew.printf("  %s  id=%s  %s to %s\n", m.Key, m.ID, m.Output(), m.Aggregate)
	}
	ew.printf("Faults (%d):\n", len(hd.Plan.Faults))
	if len(hd.Plan.Faults) == 0 {
		ew.printf("  none\n")
	}
	if n := hd.Plan.ConsumerCount(); n > 1 {
		ew.printf("  (%d competing consumers)\n", n)
	}
	for _, f := range hd.Plan.Faults {
		ew.printf("  %s\n", f)
	}
	if len(res.Expected) > 0 {
		ew.printf("Closest exactly-once execution:\n")
		for _, l := range res.Expected {
			ew.printf("  %s\n", l)
		}
	}
	if h != nil {
		ew.printf("Timeline:\n")
		for _, l := range h.Timeline() {
			ew.printf("%s\n", l)
		}
	}
}

// VerdictLine is a result in one line: "PASS", "INCONCLUSIVE: reason" or
// "VIOLATION: lost, duplicate".
func VerdictLine(res checkers.Result) string {
	switch res.Verdict {
	case histories.Pass:
		return "PASS"
	case histories.Inconclusive:
		return "INCONCLUSIVE: " + res.Reason
	}
	return "VIOLATION: " + Anomalies(res)
}

// Anomalies lists a result's anomalies: "lost, duplicate".
func Anomalies(res checkers.Result) string {
	names := make([]string, len(res.Anomalies))
	for i, a := range res.Anomalies {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// Plural counts a noun: "1 message", "2 messages", "3 deliveries".
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
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
