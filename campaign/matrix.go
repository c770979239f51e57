package campaign

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/memstore"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/sim"
)

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
	// Model is the model of every cell (default: model.Orders).
	Model model.Model
	// Backend is the backend of every cell (default: in memory).
	Backend adapters.Backend
	// Cache is the cache backend of every cell (default: in memory).
	Cache adapters.CacheBackend
	// Strategies are the rows, in order (default: the built-in ones,
	// catalogue.Builtin).
	Strategies []adapters.Strategy
	// Columns are fault columns: a kind, kinds joined by "+", or "all"
	// (default: MatrixColumns()).
	Columns []string
	// Runs is the number of runs per cell (default 200).
	Runs int
	// MaxMessages bounds the logical messages per run (default 8).
	MaxMessages int
	Seed        uint64
	// Out is where counterexamples are saved; Shrink enables shrinking
	// them (otherwise the failing run is saved as found).
	Out        string
	Shrink     bool
	ShrinkTime time.Duration
	// Parallel is the number of cells run at once (default: the number of
	// CPUs).
	Parallel int
	// Isolation is the isolation level of every cell (default read
	// committed).
	Isolation adapters.Isolation
	// Broker is the broker of every cell: sim.BrokerQueue (default) or
	// sim.BrokerLog (Config.Broker).
	Broker string
	// Progress, when set, is called after each cell.
	Progress func(done, total int, c Cell)
	// Shard and Shards split the cells between Shards processes: this one
	// runs the cells whose index i, strategy by strategy and column by
	// column, has i%Shards == Shard-1 (default: all of them). The shards'
	// cells together are the whole matrix's, cell for cell.
	Shard, Shards int
}

// Cell is one strategy under one fault column.
type Cell struct {
	Strategy string            `json:"strategy"`
	Fault    string            `json:"fault"`
	Verdict  histories.Verdict `json:"verdict"`
	// Anomalies are the anomaly names of the counterexample found.
	Anomalies []histories.Anomaly `json:"anomalies"`
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
	// SaveError says why the counterexample could not be saved.
	SaveError string `json:"save_error,omitempty"`
	// NotApplicable says why the strategy makes no sense with the model;
	// such a cell is not run.
	NotApplicable string `json:"not_applicable,omitempty"`
	// Reason says why a cell is inconclusive.
	Reason string `json:"reason,omitempty"`
	// Stopped says that the cell passed the runs it did but was stopped
	// (its context cancelled) before it had done them all.
	Stopped bool `json:"stopped,omitempty"`
}

// Matrix is a table of verdicts: strategies by fault columns, for one model.
type Matrix struct {
	Model     string `json:"model"`
	Backend   string `json:"backend"`
	Isolation string `json:"isolation"`
	// Broker is "log" for a matrix on the log broker, empty on the queue.
	Broker     string   `json:"broker,omitempty"`
	Seed       uint64   `json:"seed"`
	Runs       int      `json:"runs_per_cell"`
	Strategies []string `json:"strategies"`
	Columns    []string `json:"faults"`
	Cells      []Cell   `json:"cells"`
	// Shard is "K/N" for a matrix that ran shard K of N of the cells
	// (MatrixOptions.Shard), empty for a whole one.
	Shard string `json:"shard,omitempty"`
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
	if o.Model == nil {
		o.Model = model.Orders{}
	}
	if len(o.Strategies) == 0 {
		o.Strategies = catalogue.Builtin().Strategies
	}
	if o.Backend == nil {
		o.Backend = memstore.Backend{}
	}
	if o.Out == "" {
		o.Out = "oncecheck-results"
	}
	if err := writable(o.Out); err != nil {
		return nil, err
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
	cols := make([][]faults.Kind, len(o.Columns))
	for i, c := range o.Columns {
		var err error
		if cols[i], err = faults.ParseKinds(c); err != nil {
			return nil, configErrorf("Columns", "%v", err)
		}
	}
	names := make([]string, len(o.Strategies))
	for i, s := range o.Strategies {
		names[i] = s.Name
	}
	broker, err := sim.ParseBroker(o.Broker)
	if err != nil {
		return nil, configErrorf("Broker", "%v", err)
	}
	mx := &Matrix{Model: o.Model.Name(), Backend: o.Backend.Name(), Isolation: string(o.Isolation.Or(adapters.ReadCommitted)), Seed: o.Seed, Runs: o.Runs, Strategies: names, Columns: o.Columns}
	if broker != sim.BrokerQueue {
		mx.Broker = broker
	}
	type job struct {
		index    int
		strategy adapters.Strategy
		column   int
	}
	if o.Shards > 1 && (o.Shard < 1 || o.Shard > o.Shards) {
		return nil, configErrorf("Shard", "shard %d of %d does not exist", o.Shard, o.Shards)
	}
	if o.Shards > 1 {
		mx.Shard = fmt.Sprintf("%d/%d", o.Shard, o.Shards)
	}
	var jobs []job
	i := 0
	for _, s := range o.Strategies {
		for ci := range o.Columns {
			if o.Shards <= 1 || i%o.Shards == o.Shard-1 {
				jobs = append(jobs, job{len(jobs), s, ci})
			}
			i++
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

func runCell(ctx context.Context, o MatrixOptions, strategy adapters.Strategy, column string, kinds []faults.Kind) (Cell, error) {
	c := Cell{Strategy: strategy.Name, Fault: column, Anomalies: []histories.Anomaly{}}
	t, err := New(Config{Model: o.Model, Strategy: strategy, Backend: o.Backend, Cache: o.Cache, Faults: kinds, MaxMessages: o.MaxMessages, Isolation: o.Isolation, Broker: o.Broker})
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
	c.Stopped = rep.Verdict == histories.Pass && rep.Runs < o.Runs
	if rep.Verdict == histories.Violation {
		c.RunsToFailure, c.History = rep.RunsToFailure, rep.Path
		if rep.SaveError != nil {
			c.SaveError = rep.SaveError.Error()
		}
		c.MillisToFailure = float64(rep.TimeToFailure.Microseconds()) / 1000
		c.ShrinkMillis = float64(rep.ShrinkTime.Microseconds()) / 1000
		c.Anomalies = append(c.Anomalies, rep.Result.Anomalies...)
		slices.Sort(c.Anomalies)
	}
	return c, nil
}

// Summary renders a cell's outcome in a word or two: "pass", "n/a",
// "stopped" (interrupted), "inconclusive", or its anomalies joined by "+"
// ("lost+duplicate").
func (c Cell) Summary() string {
	switch {
	case c.NotApplicable != "":
		return "n/a"
	case c.Stopped:
		return "stopped"
	case c.Verdict == histories.Pass:
		return "pass"
	case c.Verdict == histories.Violation:
		names := make([]string, len(c.Anomalies))
		for i, a := range c.Anomalies {
			names[i] = string(a)
		}
		return strings.Join(names, "+")
	case c.Verdict == histories.Inconclusive:
		return "inconclusive"
	}
	return "-"
}
