package oncecheck

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// Catalogue lists the built-in strategies in the design's order; strategies
// registered by users follow, sorted by name.
func Catalogue() []string {
	order := []string{"naive", "ack-first", "publish-first", "dedup", "dedup-republish", "dedup-mark-first",
		"dedup-mark-last", "dedup-memory", "outbox", "sequence", "version", "state-based", "reservation"}
	var out []string
	for _, n := range order {
		if _, err := adapters.Lookup(n); err == nil {
			out = append(out, n)
		}
	}
	for _, n := range adapters.Names() {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Models lists the registered models, the built-in ones first in the
// design's order.
func Models() []string {
	out := []string{}
	for _, n := range []string{"orders", "accounts", "profiles"} {
		if _, err := model.Lookup(n); err == nil {
			out = append(out, n)
		}
	}
	for _, n := range model.Names() {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// MatrixColumns are the fault columns of the matrix: each kind alone, then
// all together.
func MatrixColumns() []string {
	cols := make([]string, 0, len(faults.AllKinds)+1)
	for _, k := range faults.AllKinds {
		cols = append(cols, string(k))
	}
	return append(cols, "all")
}

// MatrixOptions configure a matrix.
type MatrixOptions struct {
	Model      string
	Backend    string
	Strategies []string // default: Catalogue()
	Columns    []string // default: MatrixColumns()
	// Runs is the number of runs per cell (default 200).
	Runs int
	// MaxMessages bounds the logical messages per run (default 8).
	MaxMessages int
	// Postgres is the pg backend's DSN (default: $ONCECHECK_PG).
	Postgres string
	Seed     uint64
	// Out is where counterexamples are saved; Shrink enables shrinking
	// them (otherwise the failing run is saved as found).
	Out        string
	Shrink     bool
	ShrinkTime time.Duration
	// Parallel is the number of cells run at once (default: the number of
	// CPUs).
	Parallel int
	// Progress, when set, is called after each cell.
	Progress func(done, total int, c Cell)
}

// Cell is one strategy under one fault column.
type Cell struct {
	Strategy string            `json:"strategy"`
	Fault    string            `json:"fault"`
	Verdict  histories.Verdict `json:"verdict"`
	// Anomalies are the anomaly names of the counterexample found.
	Anomalies []string `json:"anomalies"`
	// Runs is the number of runs done.
	Runs int `json:"runs"`
	// RunsToFailure is the number of runs it took to find the violation.
	RunsToFailure int `json:"runs_to_failure,omitempty"`
	// MillisToFailure and ShrinkMillis are the wall time to the failing
	// run's verdict and the time shrinking took, in milliseconds.
	MillisToFailure float64 `json:"ms_to_failure,omitempty"`
	ShrinkMillis    float64 `json:"shrink_ms,omitempty"`
	// History is the path of the saved counterexample.
	History string `json:"history,omitempty"`
	// NotApplicable says why the strategy makes no sense with the model;
	// such a cell is not run.
	NotApplicable string `json:"not_applicable,omitempty"`
	// Reason says why a cell is inconclusive.
	Reason string `json:"reason,omitempty"`
}

// Matrix is a table of verdicts: strategies by fault columns, for one model.
type Matrix struct {
	Model      string   `json:"model"`
	Backend    string   `json:"backend"`
	Seed       uint64   `json:"seed"`
	Runs       int      `json:"runs_per_cell"`
	Strategies []string `json:"strategies"`
	Columns    []string `json:"faults"`
	Cells      []Cell   `json:"cells"`
}

// Cell returns the cell of a strategy and column.
func (m *Matrix) Cell(strategy, column string) (Cell, bool) {
	for _, c := range m.Cells {
		if c.Strategy == strategy && c.Fault == column {
			return c, true
		}
	}
	return Cell{}, false
}

// RunMatrix runs every cell. A cancelled ctx stops the cells not yet
// started; the cells done are returned.
func RunMatrix(ctx context.Context, o MatrixOptions) (*Matrix, error) {
	if o.Model == "" {
		o.Model = "orders"
	}
	if o.Backend == "" {
		o.Backend = "mem"
	}
	if len(o.Strategies) == 0 {
		o.Strategies = Catalogue()
	}
	if len(o.Columns) == 0 {
		o.Columns = MatrixColumns()
	}
	if o.Runs <= 0 {
		o.Runs = 200
	}
	if o.Parallel <= 0 {
		o.Parallel = runtime.NumCPU()
	}
	m, err := model.Lookup(o.Model)
	if err != nil {
		return nil, errors.Join(ErrUsage, err)
	}
	cols := make([][]faults.Kind, len(o.Columns))
	for i, c := range o.Columns {
		if cols[i], err = faults.ParseKinds(c); err != nil {
			return nil, errors.Join(ErrUsage, err)
		}
	}
	mx := &Matrix{Model: m.Name(), Backend: o.Backend, Seed: o.Seed, Runs: o.Runs, Strategies: o.Strategies, Columns: o.Columns}
	type job struct {
		index    int
		strategy string
		column   int
	}
	var jobs []job
	for _, s := range o.Strategies {
		for ci := range o.Columns {
			jobs = append(jobs, job{len(jobs), s, ci})
		}
	}
	mx.Cells = make([]Cell, len(jobs))
	var (
		mu       sync.Mutex
		done     int
		firstErr error
		wg       sync.WaitGroup
	)
	queue := make(chan job)
	for range min(o.Parallel, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range queue {
				c, err := runCell(ctx, o, j.strategy, o.Columns[j.column], cols[j.column])
				mu.Lock()
				mx.Cells[j.index] = c
				if err != nil && firstErr == nil {
					firstErr = err
				}
				done++
				if o.Progress != nil {
					o.Progress(done, len(jobs), c)
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		queue <- j
	}
	close(queue)
	wg.Wait()
	if firstErr != nil {
		return mx, firstErr
	}
	// Drop cells never started (cancelled).
	kept := mx.Cells[:0]
	for _, c := range mx.Cells {
		if c.Strategy != "" {
			kept = append(kept, c)
		}
	}
	mx.Cells = kept
	return mx, nil
}

func runCell(ctx context.Context, o MatrixOptions, strategy, column string, kinds []faults.Kind) (Cell, error) {
	c := Cell{Strategy: strategy, Fault: column, Anomalies: []string{}}
	t, err := New(Config{Model: o.Model, Strategy: strategy, Backend: o.Backend, Faults: kinds, MaxMessages: o.MaxMessages, Postgres: o.Postgres})
	if err != nil {
		var unsupported *adapters.UnsupportedError
		if errors.As(err, &unsupported) {
			c.NotApplicable = unsupported.Reason
			return c, nil
		}
		return c, err
	}
	defer t.Close()
	rep, err := t.Search(ctx, SearchOptions{Runs: o.Runs, Seed: o.Seed, Out: o.Out, NoShrink: !o.Shrink, ShrinkTime: o.ShrinkTime})
	if err != nil {
		return c, err
	}
	c.Verdict, c.Runs, c.Reason = rep.Verdict, rep.Runs, rep.Reason
	if rep.Verdict == histories.Violation {
		c.RunsToFailure, c.History = rep.RunsToFailure, rep.Path
		c.MillisToFailure = float64(rep.TimeToFailure.Microseconds()) / 1000
		c.ShrinkMillis = float64(rep.ShrinkTime.Microseconds()) / 1000
		for _, a := range rep.Result.Anomalies {
			c.Anomalies = append(c.Anomalies, string(a))
		}
		sort.Strings(c.Anomalies)
	}
	return c, nil
}

// Summary renders a cell in a few words: "pass 200", "lost @3", "n/a".
func (c Cell) Summary() string {
	switch {
	case c.NotApplicable != "":
		return "n/a"
	case c.Verdict == histories.Pass:
		return "pass"
	case c.Verdict == histories.Violation:
		return strings.Join(c.Anomalies, "+")
	case c.Verdict == histories.Inconclusive:
		return "inconclusive"
	}
	return "-"
}
