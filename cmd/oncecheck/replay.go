package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/report"
)

func replayCmd(_ context.Context, cat catalogue.Catalogue, args []string, stdout, _ io.Writer) (int, error) {
	fs := newFlagSet("replay", "replay [flags] FILE", `  oncecheck replay oncecheck-results/dedup-orders-crash-lost-42.jsonl
  oncecheck replay --strategy outbox oncecheck-results/dedup-orders-crash-lost-42.jsonl
`, stdout)
	strategy := fs.String("strategy", "", "run the plan on another strategy (default: the history's own)")
	backend := fs.String("backend", "", "run on another backend: mem, or pg with $ONCECHECK_PG (default: the history's own)")
	cache := fs.String("cache", "", "run the handlers' cache on another backend: mem, or redis with $ONCECHECK_REDIS (default: the history's own)")
	verbose := fs.Bool("v", false, "print the explanation and timeline of a failing replay")
	asJSON := fs.Bool("json", false, "print the outcome as one JSON object")
	files, err := parse(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(files) != 1 {
		return exitUsage, usagef("want exactly one history file, got %d", len(files))
	}
	h, err := loadHistory(files[0])
	if err != nil {
		return exitUsage, err
	}
	replayed, res, err := oncecheck.Replay(h, oncecheck.ReplayOptions{Catalogue: cat, Strategy: *strategy, Backend: *backend, Cache: *cache})
	if uerr := asUsage(err); uerr != nil {
		return exitUsage, usagef("%s: %v", files[0], uerr)
	}
	if err != nil {
		return exitInconclusive, fmt.Errorf("%s: %w", files[0], err)
	}
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
		fmt.Fprintf(stdout, "replayed the plan of %s (strategy %s) on strategy %s: %s\n",
			files[0], h.Header.Strategy, *strategy, report.Plural(len(replayed.Events), "event"))
	case step == 0:
		fmt.Fprintf(stdout, "replayed %s: identical to the saved history\n", report.Plural(len(replayed.Events), "event"))
	case h.Header.FreeRunning:
		fmt.Fprintf(stdout, "replayed the plan free-running, as the saved run was: its own interleaving differs from the saved history at step %d\n", step)
	default:
		fmt.Fprintf(stdout, "replay DIFFERS from the saved history at step %d: the run is not deterministic, or the strategy's code changed since it was saved\n", step)
	}
	return printVerdict(stdout, files[0], replayed.Header, len(replayed.Events), replayed, res, *verbose), nil
}
