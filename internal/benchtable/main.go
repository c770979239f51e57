// Command benchtable prints the summary tables of `make bench` from the
// output of `go test -bench` (files named on the command line, or standard
// input): the harness against bare handler calls, parallel scaling, the
// heap over a long campaign, the checker against raw porcupine, PostgreSQL
// transaction rates, and the time to the first violation and the shrink time
// of every unsafe matrix cell. Every ratio it prints is between two
// benchmarks of the same input, which `make bench` produces in one run.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// results maps a benchmark's name (without "Benchmark" and the -N suffix)
// to its metrics by unit ("ns/op", "runs/s", ...).
type results map[string]map[string]float64

var line = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func parse(r io.Reader, into results, order *[]string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name, fields := m[1], strings.Fields(m[2])
		if into[name] == nil {
			into[name] = map[string]float64{}
			*order = append(*order, name)
		}
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			into[name][fields[i+1]] = v
		}
	}
	return sc.Err()
}

func main() {
	res, order := results{}, []string{}
	if len(os.Args) == 1 {
		if err := parse(os.Stdin, res, &order); err != nil {
			fail(err)
		}
	}
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fail(err)
		}
		err = parse(f, res, &order)
		f.Close()
		if err != nil {
			fail(err)
		}
	}
	if len(res) == 0 {
		fail(fmt.Errorf("no benchmark results in the input"))
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	harness(w, res, order)
	parallel(w, res)
	campaign(w, res)
	checker(w, res)
	postgres(w, res)
	unsafeCells(w, res, order)
	w.Flush()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchtable:", err)
	os.Exit(1)
}

// verdict marks a figure against its target.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

func title(w *tabwriter.Writer, s string) {
	w.Flush()
	fmt.Fprintf(w, "\n%s\n", s)
}

// under returns, in input order, the names of the sub-benchmarks of a
// family, without the family's prefix.
func under(order []string, family string) []string {
	var names []string
	for _, n := range order {
		if s, ok := strings.CutPrefix(n, family+"/"); ok {
			names = append(names, s)
		}
	}
	return names
}

func harness(w *tabwriter.Writer, res results, order []string) {
	names := under(order, "Harness")
	if len(names) == 0 {
		return
	}
	title(w, "Harness against bare handler calls (every fault kind, 20 messages, alternating; target: at most 3x)")
	fmt.Fprintln(w, "strategy\tharness µs/run\tbare µs/run\tharness/bare\ttarget\t")
	worst := 0.0
	for _, s := range names {
		r := res["Harness/"+s]
		worst = max(worst, r["harness/bare"])
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.2f\t\t\n", s, r["harness-µs/run"], r["bare-µs/run"], r["harness/bare"])
	}
	fmt.Fprintf(w, "worst\t\t\t%.2f\t%s\t\n", worst, verdict(worst <= 3))
}

func parallel(w *tabwriter.Writer, res results) {
	r := res["ParallelRuns"]
	if r == nil {
		return
	}
	title(w, "Parallel runs (alternating campaigns of 500 runs; target: --parallel 2 at least 1.8x --parallel 1)")
	fmt.Fprintln(w, "--parallel 1 runs/s\t--parallel 2 runs/s\tspeed-up\ttarget\t")
	fmt.Fprintf(w, "%.0f\t%.0f\t%.2f\t%s\t\n", r["runs/s-parallel-1"], r["runs/s-parallel-2"], r["speed-up"], verdict(r["speed-up"] >= 1.8))
}

func campaign(w *tabwriter.Writer, res results) {
	c := res["CampaignMemory"]
	if c == nil {
		return
	}
	title(w, "A long campaign: live heap after a collection (flat: nothing kept per run)")
	fmt.Fprintln(w, "heap at 10% MiB\theap at 90% MiB\truns/s\t")
	fmt.Fprintf(w, "%.2f\t%.2f\t%.0f\t\n", c["MiB-heap-at-10%"], c["MiB-heap-at-90%"], c["runs/s"])
}

func checker(w *tabwriter.Writer, res results) {
	var sizes []int
	for n := range res {
		if s, ok := strings.CutPrefix(n, "Check/"); ok {
			if v, err := strconv.Atoi(s); err == nil {
				sizes = append(sizes, v)
			}
		}
	}
	if len(sizes) == 0 {
		return
	}
	slices.Sort(sizes)
	title(w, "The checker against raw porcupine (alternating; targets: at most 1.5x; ns/msg at 1,000,000 within 1.5x of 10,000; 1,000,000 in under 2 GiB)")
	fmt.Fprintln(w, "messages\tours ns/msg\tporcupine ns/msg\tours/porcupine\ttarget\t")
	worst := 0.0
	for _, n := range sizes {
		r := res[fmt.Sprintf("Check/%d", n)]
		worst = max(worst, r["ours/porcupine"])
		fmt.Fprintf(w, "%d\t%.0f\t%.0f\t%.2f\t\t\n", n, r["ours-ns/msg"], r["porcupine-ns/msg"], r["ours/porcupine"])
	}
	fmt.Fprintf(w, "worst ratio\t\t\t%.2f\t%s\t\n", worst, verdict(worst <= 1.5))
	if r := res["CheckScaling"]; r != nil { // the two sizes alternating in one benchmark
		fmt.Fprintf(w, "ns/msg 1,000,000 / 10,000 (alternating)\t\t\t%.2f\t%s\t\n", r["1M/10k"], verdict(r["1M/10k"] <= 1.5))
	}
	if d := res["DecodeEvent"]; d != nil {
		fmt.Fprintf(w, "event lines decoded, speed-up on encoding/json\t\t\t%.1f\t\t\n", d["speed-up"])
	}
	if p := res["CheckPeakMemory/file"]; p != nil {
		fmt.Fprintf(w, "peak MiB at 1,000,000, from the file\t\t\t%.0f\t%s\t\n", p["MiB-peak"], verdict(p["MiB-peak"] < 2048))
	}
	if p := res["CheckPeakMemory/in-memory"]; p != nil {
		fmt.Fprintf(w, "peak MiB at 1,000,000, history held\t\t\t%.0f\t\t\n", p["MiB-peak"])
		fmt.Fprintf(w, "(the history alone, MiB)\t\t\t%.0f\t\t\n", p["MiB-history"])
	}
}

func postgres(w *tabwriter.Writer, res results) {
	h, b, pg := res["PostgresTransactions/harness"]["tx/s"], res["PostgresTransactions/bare"]["tx/s"], res["PostgresTransactions/pgbench"]["tx/s"]
	if h == 0 || b == 0 {
		return
	}
	title(w, "PostgreSQL transactions (target: harness at least 0.7x the bare loop)")
	fmt.Fprintln(w, "harness tx/s\tbare tx/s\tpgbench tx/s\tharness/bare\ttarget\t")
	fmt.Fprintf(w, "%.0f\t%.0f\t%.0f\t%.2f\t%s\t\n", h, b, pg, h/b, verdict(h/b >= 0.7))
}

func unsafeCells(w *tabwriter.Writer, res results, order []string) {
	cells := under(order, "UnsafeCells")
	if len(cells) == 0 {
		return
	}
	title(w, "Unsafe matrix cells: runs and time to the first violation, shrink time (seed 1, one worker)")
	fmt.Fprintln(w, "model/strategy/faults\truns\tms to failure\tshrink ms\t")
	var runs, find, shrink []float64
	for _, c := range cells {
		r := res["UnsafeCells/"+c]
		runs, find, shrink = append(runs, r["runs-to-failure"]), append(find, r["ms-to-failure"]), append(shrink, r["ms-shrink"])
		fmt.Fprintf(w, "%s\t%.0f\t%.1f\t%.0f\t\n", c, r["runs-to-failure"], r["ms-to-failure"], r["ms-shrink"])
	}
	fmt.Fprintf(w, "median of %d cells\t%.0f\t%.1f\t%.0f\t\n", len(cells), median(runs), median(find), median(shrink))
	fmt.Fprintf(w, "worst\t%.0f\t%.1f\t%.0f\t\n", slices.Max(runs), slices.Max(find), slices.Max(shrink))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
