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
	"github.com/oncecheck/oncecheck/service"
)

func showCmd(ctx context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("show", "show [flags] FILE", `  oncecheck show oncecheck-results/dedup-orders-crash-lost-mem-42.jsonl
  oncecheck show --json oncecheck-results/dedup-orders-crash-lost-mem-42.jsonl
  oncecheck show --html report.html oncecheck-results/dedup-orders-crash-lost-mem-42.jsonl
  oncecheck show - < history.jsonl
`, stdout)
	asJSON := fs.Bool("json", false, "print the history and its check as one JSON object")
	htmlPath := fs.String("html", "", "also write a self-contained HTML report (timeline, verdict, explanation, porcupine's view) to this file (holds the whole history in memory)")
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
	if *htmlPath == "" || *asJSON {
		return showStreamed(ctx, cat, in, files[0], *asJSON, stdout, stderr)
	}
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
	if h.Header.Strategy == "service" { // the faults that struck each finding's messages
		if err := service.Explain(h, &res); err != nil {
			return exitInconclusive, err
		}
	}
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

// showStreamed prints a history as text (or JSON) the way check reads one:
// the check streams the file, and the timeline reads it twice more (its
// lanes, then its lines; JSON once), so a history of millions of events is
// never held in memory.
func showStreamed(ctx context.Context, cat catalogue.Catalogue, in *input, name string, asJSON bool, stdout, stderr io.Writer) (int, error) {
	f, err := openHistory(in)
	if err != nil {
		return exitUsage, err
	}
	bar := newProgress(stderr)
	res, err := interruptible(ctx, 0, func() (checkers.Result, error) {
		return oncecheck.CheckStream(f.Header, countedStream{f, bar, "events read from " + name}, oncecheck.CheckOptions{Catalogue: cat})
	})
	bar.done()
	if errors.Is(err, errInterrupted) || ctx.Err() != nil {
		return interrupted(ctx, stderr, "show", name)
	}
	if err != nil {
		var se *histories.SyntaxError
		if errors.As(err, &se) && se.File != "" {
			err = se // its line, as when the history was loaded whole
		}
		return exitUsage, usagef("%s", in.rename(historyError(in.path, err)))
	}
	if f.Header.Strategy == "service" && res.Verdict == histories.Violation { // the faults that struck each finding's messages
		if err := service.Explain(stoppable{f, ctx}, &res); err != nil {
			return exitInconclusive, errors.New(in.rename(historyError(in.path, err)))
		}
	}
	if asJSON {
		err = showJSON(stdout, f.Header, stoppable{f, ctx}, newVerdictJSON(name, res))
	} else {
		err = report.TextStream(stdout, name, f.Header, stoppable{f, ctx}, res)
	}
	if errors.Is(err, errInterrupted) {
		fmt.Fprintf(stderr, "oncecheck show: %v while printing the events of %s; the output is cut short\n", context.Cause(ctx), name)
		return exitInterrupted, nil
	}
	if err != nil {
		return exitInconclusive, errors.New(in.rename(historyError(in.path, err)))
	}
	return exitCode(res.Verdict), nil
}

// showJSON writes what show --json prints, {"header":...,"events":[...],
// "check":...} on one line, as encoding/json writes it from a struct of the
// three, reading the events once and holding none. It writes in chunks
// that end between two events.
func showJSON(w io.Writer, hd histories.Header, events histories.Stream, check verdictJSON) error {
	var buf bytes.Buffer
	flush := func() error {
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		return err
	}
	enc := json.NewEncoder(&buf)
	encode := func(v any) error {
		if err := enc.Encode(v); err != nil {
			return err
		}
		buf.Truncate(buf.Len() - 1) // the newline Encode ends with
		return nil
	}
	buf.WriteString(`{"header":`)
	if err := encode(hd); err != nil {
		return err
	}
	buf.WriteString(`,"events":`)
	n := 0
	err := events.Each(func(ev *histories.Event) error {
		if n++; n == 1 {
			buf.WriteByte('[')
		} else {
			buf.WriteByte(',')
		}
		if err := encode(ev); err != nil {
			return err
		}
		if buf.Len() >= 32<<10 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n == 0 {
		buf.WriteString("null") // a nil slice, as when the history was loaded whole
	} else {
		buf.WriteByte(']')
	}
	buf.WriteString(`,"check":`)
	if err := encode(check); err != nil {
		return err
	}
	buf.WriteString("}\n")
	return flush()
}

// stoppable is a history file whose passes stop with errInterrupted once
// ctx is done: a long timeline is not printed to its end after a signal.
type stoppable struct {
	*histories.File
	ctx context.Context
}

func (s stoppable) Each(fn func(*histories.Event) error) error {
	n := 0
	return s.File.Each(func(ev *histories.Event) error {
		if n++; n%1024 == 0 && s.ctx.Err() != nil {
			return errInterrupted
		}
		return fn(ev)
	})
}

// interrupted reports a command stopped by a signal before it had
// anything to show, and gives its exit code.
func interrupted(ctx context.Context, stderr io.Writer, cmd, file string) (int, error) {
	fmt.Fprintf(stderr, "oncecheck %s: %v before %s was done; nothing written\n", cmd, context.Cause(ctx), file)
	return exitInterrupted, nil
}
