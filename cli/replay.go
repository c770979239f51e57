package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/model"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/report"
)

func replayCmd(ctx context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("replay", "replay [flags] FILE", `  oncecheck replay oncecheck-results/dedup-orders-crash-lost-mem-42.jsonl
  oncecheck replay --strategy outbox oncecheck-results/dedup-orders-crash-lost-mem-42.jsonl
`, stdout)
	strategy := fs.String("strategy", "", "run the plan on another strategy (default: the history's own)")
	backend := fs.String("backend", "", "run on another backend: mem, or pg with $ONCECHECK_PG (default: the history's own)")
	pgDSN := fs.String("pg", "", "PostgreSQL DSN for --backend pg (default: $ONCECHECK_PG)")
	cache := fs.String("cache", "", "run the handlers' cache on another backend: mem, or redis with $ONCECHECK_REDIS (default: the history's own)")
	isolation := fs.String("isolation", "", "run at another isolation level: read-committed, repeatable-read or serializable (default: the history's own)")
	broker := fs.String("broker", "", "run on another broker: queue or log (default: the history's own)")
	verbose := fs.Bool("v", false, "print the explanation and timeline of a failing replay")
	asJSON := fs.Bool("json", false, "print the outcome as one JSON object")
	files, err := parse(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(files) != 1 {
		return exitUsage, usagef("want exactly one history file (- for standard input), got %d", len(files))
	}
	if *pgDSN != "" {
		if err := checkDSN(*pgDSN); err != nil {
			return exitUsage, err
		}
		cat = cat.WithBackends(pgstore.Backend{DSN: *pgDSN})
	}
	in, err := openInput(ctx, files[0])
	if errors.Is(err, errInterrupted) {
		return interrupted(ctx, stderr, "replay", files[0])
	}
	if err != nil {
		return exitUsage, err
	}
	defer in.close()
	h, err := loadHistory(in)
	if err != nil {
		return exitUsage, err
	}
	level, err := adapters.ParseIsolation(*isolation)
	if *isolation != "" && err != nil {
		return exitUsage, usagef("--isolation: %v", err)
	}
	if *isolation == "" {
		level = ""
	}
	o := oncecheck.ReplayOptions{Catalogue: cat, Strategy: *strategy, Backend: *backend, Isolation: level, Cache: *cache, Broker: *broker}
	if _, _, err := resolveReplay(cat, h, o); err != nil {
		return exitUsage, usagef("%s: %v", files[0], asUsage(err))
	}
	type replay struct {
		h   *histories.History
		res checkers.Result
	}
	// A replay is one run: a signal lets it finish (a few seconds at most)
	// so that its store is closed (the pg backend drops its schema).
	r, err := interruptible(ctx, replayGrace, func() (replay, error) {
		replayed, res, err := oncecheck.Replay(h, o)
		return replay{replayed, res}, err
	})
	if errors.Is(err, errInterrupted) {
		return interrupted(ctx, stderr, "replay", files[0])
	}
	if uerr := asUsage(err); uerr != nil {
		return exitUsage, usagef("%s: %v", files[0], uerr)
	}
	if err != nil {
		if *asJSON {
			v := verdictJSON{File: files[0], Verdict: string(histories.Inconclusive), Anomalies: []histories.Anomaly{}, Error: err.Error()}
			return exitInconclusive, encodeJSON(stdout, v)
		}
		return exitInconclusive, fmt.Errorf("%s: %w", files[0], err)
	}
	replayed, res := r.h, r.res
	same := (*strategy == "" || *strategy == h.Header.Strategy) && (*backend == "" || *backend == h.Header.Backend)
	step := histories.FirstDifference(h.Events, replayed.Events)
	if *asJSON {
		v := newVerdictJSON(files[0], res)
		v.Strategy = replayed.Header.Strategy
		if same {
			identical := step == 0
			v.Identical, v.FirstDifference = &identical, step
		}
		if err := json.NewEncoder(stdout).Encode(v); err != nil {
			return exitInconclusive, err
		}
		return exitCode(res.Verdict), nil
	}
	switch {
	case !same:
		fmt.Fprintf(stdout, "replayed the plan of %s (strategy %s, backend %s) on strategy %s, backend %s: %s\n",
			files[0], h.Header.Strategy, orMem(h.Header.Backend), replayed.Header.Strategy, orMem(replayed.Header.Backend), report.Plural(len(replayed.Events), "event"))
	case step == 0:
		fmt.Fprintf(stdout, "replayed %s: identical to the saved history\n", report.Plural(len(replayed.Events), "event"))
	case h.Header.FreeRunning:
		fmt.Fprintf(stdout, "replayed the plan free-running, as the saved run was: its own interleaving differs from the saved history at step %d\n", step)
	default:
		fmt.Fprintf(stdout, "replay DIFFERS from the saved history at step %d: the run is not deterministic, or the strategy's code changed since it was saved\n", step)
	}
	return printVerdict(stdout, files[0], replayed.Header, len(replayed.Events), replayed, res, *verbose), nil
}

// replayGrace is how long a signalled replay may take to finish its run.
const replayGrace = 10 * time.Second

func orMem(backend string) string {
	if backend == "" {
		return "mem"
	}
	return backend
}

// resolveReplay looks up, before any work, the names a replay needs.
func resolveReplay(cat catalogue.Catalogue, h *histories.History, o oncecheck.ReplayOptions) (model.Model, adapters.Strategy, error) {
	if o.Strategy == "" {
		o.Strategy = h.Header.Strategy
	}
	if o.Backend == "" {
		o.Backend = h.Header.Backend
	}
	m, err := cat.Model(h.Header.Model)
	if err != nil {
		return nil, adapters.Strategy{}, err
	}
	s, err := cat.Strategy(o.Strategy)
	if err != nil {
		return nil, adapters.Strategy{}, err
	}
	if o.Backend != "" {
		if _, err := cat.Backend(o.Backend); err != nil {
			return nil, adapters.Strategy{}, err
		}
	}
	return m, s, nil
}
