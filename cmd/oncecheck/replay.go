package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/histories"
)

func replayCmd(_ context.Context, args []string, stdout, _ io.Writer) (int, error) {
	fs := newFlagSet("replay", "replay [flags] FILE", `  oncecheck replay oncecheck-results/dedup-orders-lost-42.jsonl
  oncecheck replay --strategy outbox oncecheck-results/dedup-orders-lost-42.jsonl
`, stdout)
	strategy := fs.String("strategy", "", "run the plan on another strategy (default: the history's own)")
	verbose := fs.Bool("v", false, "print the explanation and timeline of a failing replay")
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
	replayed, res, err := oncecheck.Replay(h, *strategy)
	if errors.Is(err, oncecheck.ErrUsage) {
		return exitUsage, usagef("%s: %v", files[0], err)
	}
	if err != nil {
		return exitInconclusive, fmt.Errorf("%s: %w", files[0], err)
	}
	if *strategy == "" || *strategy == h.Header.Strategy {
		if step := histories.FirstDifference(h.Events, replayed.Events); step == 0 {
			fmt.Fprintf(stdout, "replayed %d events: identical to the saved history\n", len(replayed.Events))
		} else {
			fmt.Fprintf(stdout, "replay DIFFERS from the saved history at step %d: the run is not deterministic (or the strategy changed)\n", step)
		}
	} else {
		fmt.Fprintf(stdout, "replayed the plan of %s (strategy %s) on strategy %s: %d events\n",
			files[0], h.Header.Strategy, *strategy, len(replayed.Events))
	}
	return printVerdict(stdout, files[0], replayed, res, *verbose), nil
}
