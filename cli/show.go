package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/report"
)

func showCmd(ctx context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("show", "show [flags] FILE", `  oncecheck show oncecheck-results/dedup-orders-crash-lost-mem-42.jsonl
  oncecheck show --json oncecheck-results/dedup-orders-crash-lost-mem-42.jsonl
  oncecheck show --html report.html oncecheck-results/dedup-orders-crash-lost-mem-42.jsonl
  oncecheck show - < history.jsonl
`, stdout)
	asJSON := fs.Bool("json", false, "print the history and its check as one JSON object")
	htmlPath := fs.String("html", "", "also write a self-contained HTML report (timeline, verdict, explanation, porcupine's view) to this file")
	files, err := parse(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(files) != 1 {
		return exitUsage, usagef("want exactly one history file (- for standard input), got %d", len(files))
	}
	if err := checkReportPath("--html", *htmlPath); err != nil {
		return exitUsage, err
	}
	in, err := openInput(ctx, files[0])
	if errors.Is(err, errInterrupted) {
		return interrupted(ctx, stderr, "show", files[0])
	}
	if err != nil {
		return exitUsage, err
	}
	defer in.close()
	type loaded struct {
		h   *histories.History
		res checkers.Result
	}
	l, err := interruptible(ctx, 0, func() (loaded, error) {
		h, err := loadHistory(in)
		if err != nil {
			return loaded{}, err
		}
		res, err := oncecheck.Check(h, oncecheck.CheckOptions{Catalogue: cat})
		if err != nil {
			return loaded{}, usagef("%s: %v", files[0], err)
		}
		return loaded{h, res}, nil
	})
	if errors.Is(err, errInterrupted) {
		return interrupted(ctx, stderr, "show", files[0])
	}
	if err != nil {
		return exitUsage, err
	}
	h, res := l.h, l.res
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
	if *htmlPath != "" {
		m, err := cat.Model(h.Header.Model)
		if err != nil {
			return exitUsage, usagef("%s: %v", files[0], err)
		}
		var page bytes.Buffer
		if err := report.HTML(&page, files[0], h, res, m, checkers.Options{Downstream: checkers.Downstream(h.Header.Downstream)}); err != nil {
			return exitInconclusive, err
		}
		if err := os.WriteFile(*htmlPath, page.Bytes(), 0o644); err != nil {
			return exitInconclusive, fmt.Errorf("write report: %w", err)
		}
		fmt.Fprintf(stdout, "report written to %s\n", *htmlPath)
		return exitCode(res.Verdict), nil
	}
	if ctx.Err() != nil {
		return interrupted(ctx, stderr, "show", files[0])
	}
	if err := report.Text(stdout, files[0], h, res); err != nil {
		return exitInconclusive, err
	}
	return exitCode(res.Verdict), nil
}

// interrupted reports a command stopped by a signal before it had
// anything to show, and gives its exit code.
func interrupted(ctx context.Context, stderr io.Writer, cmd, file string) (int, error) {
	fmt.Fprintf(stderr, "oncecheck %s: %v before %s was done; nothing written\n", cmd, context.Cause(ctx), file)
	return exitInterrupted, nil
}
