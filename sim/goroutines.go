package sim

import (
	"bytes"
	"context"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
)

// RunLabel is the profiler label (runtime/pprof) every goroutine of a
// scheduled run carries, with the run's RunID as its value. A goroutine
// inherits the labels of the goroutine that starts it, so goroutines an
// adapter starts carry it too, and can be counted once the run is over
// (Goroutines): the run's own have all ended by then.
const RunLabel = "oncecheck-run"

// goLabelled starts f on a goroutine labelled with the run's RunID.
func (r *runner) goLabelled(f func()) {
	labels := pprof.Labels(RunLabel, r.runID)
	go pprof.Do(context.Background(), labels, func(context.Context) { f() })
}

var labelLine = regexp.MustCompile(`"` + RunLabel + `":"([^"]*)"`)

// Goroutines counts the live goroutines whose RunLabel starts with prefix,
// by label value: after runs have returned, the goroutines their adapters
// left behind. A run's own goroutines (the workers that ran its tasks,
// perhaps still on their way out) are not counted. It takes a goroutine
// profile, so it costs in proportion to the goroutines alive: call it after
// a campaign, not after every run.
func Goroutines(prefix string) map[string]int {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return nil
	}
	out := map[string]int{}
	// The profile is a header, then one group of goroutines per stack,
	// separated by blank lines: "N @ pcs", "# labels: {...}", frames.
	_, groups, _ := strings.Cut(buf.String(), "\n") // the header line
	for _, group := range strings.Split(groups, "\n\n") {
		head, rest, _ := strings.Cut(group, "\n")
		n, _, ok := strings.Cut(head, " @ ")
		if !ok || strings.Contains(rest, "sim.(*runner).goLabelled") {
			continue
		}
		count, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if m := labelLine.FindStringSubmatch(rest); m != nil && strings.HasPrefix(m[1], prefix) {
			out[m[1]] += count
		}
	}
	return out
}
