package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	if o, ok := w.(*output); ok {
		return o.terminal
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// colour wraps s in an ANSI colour when w is a terminal and NO_COLOR is
// unset.
func colour(w io.Writer, code, s string) string {
	if o, ok := w.(*output); ok {
		if !o.colours {
			return s
		}
	} else if !isTerminal(w) || os.Getenv("NO_COLOR") != "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

const (
	red   = "1;31"
	green = "1;32"
	amber = "1;33"
)

// progress reports the progress of a campaign on w: a bar redrawn in place
// on a terminal (at most ten times a second), a plain line every five
// seconds otherwise. Done clears the bar.
type progress struct {
	w        io.Writer
	terminal bool
	start    time.Time
	last     time.Time
	drawn    bool
}

func newProgress(w io.Writer) *progress {
	now := time.Now()
	return &progress{w: w, terminal: isTerminal(w), start: now, last: now}
}

func (p *progress) update(done, total int) {
	now := time.Now()
	every := 5 * time.Second
	if p.terminal {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every || done >= total {
		return
	}
	p.last = now
	elapsed := now.Sub(p.start).Seconds()
	rate := float64(done) / elapsed
	left := time.Duration(float64(total-done)/rate) * time.Second
	if !p.terminal {
		fmt.Fprintf(p.w, "  %d/%d runs (%.0f runs/s, about %s left)\n", done, total, rate, left.Round(time.Second))
		return
	}
	const width = 30
	filled := width * done / total
	fmt.Fprintf(p.w, "\r  [%s%s] %d/%d runs  %.0f runs/s  %s left ", strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		done, total, rate, left.Round(time.Second))
	p.drawn = true
}

// count reports progress towards no known total: done things (what names
// them) so far, on the same schedule as update.
func (p *progress) count(done int, what string) {
	now := time.Now()
	every := 5 * time.Second
	if p.terminal {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	rate := float64(done) / now.Sub(p.start).Seconds()
	if !p.terminal {
		fmt.Fprintf(p.w, "  %d %s (%.0f/s)\n", done, what, rate)
		return
	}
	fmt.Fprintf(p.w, "\r  %d %s  %.0f/s ", done, what, rate)
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 80))
	}
}
