package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/histories"
)

func showCmd(_ context.Context, args []string, stdout, _ io.Writer) (int, error) {
	fs := newFlagSet("show", "show [flags] FILE", `  oncecheck show oncecheck-results/dedup-orders-crash-lost-42.jsonl
  oncecheck show --json oncecheck-results/dedup-orders-crash-lost-42.jsonl
`, stdout)
	asJSON := fs.Bool("json", false, "print the history and its check as one JSON object")
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
	res, err := oncecheck.Check(h, "", 30*time.Second)
	if err != nil {
		return exitUsage, usagef("%s: %v", files[0], err)
	}
	if *asJSON {
		out := struct {
			Header histories.Header  `json:"header"`
			Events []histories.Event `json:"events"`
			Check  verdictJSON       `json:"check"`
		}{h.Header, h.Events, newVerdictJSON(files[0], res)}
		if err := json.NewEncoder(stdout).Encode(out); err != nil {
			return exitInconclusive, err
		}
		return exitCode(res.Verdict), nil
	}
	hd := h.Header
	fmt.Fprintf(stdout, "%s\n  strategy %s, model %s, backend %s, seed %d, saved by oncecheck %s (format %s)\n",
		files[0], hd.Strategy, hd.Model, hd.Backend, hd.Seed, hd.Tool, hd.Version)
	code := printVerdict(stdout, files[0], h, res, false)
	printExplanation(stdout, h, res)
	return code, nil
}
