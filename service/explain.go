package service

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

// Struck lists where the faults of a service-mode history struck, one line
// per event a fault caused, as the proxies saw it: the step, the process
// and its attempt, and the event's detail, which for a fault at the
// PostgreSQL proxy names the statement and the connection ("step 12,
// consumer-2, attempt #2: SIGKILL: ...; the statement: INSERT INTO inbox
// ... (INSERT 0 1), its reply held, on db connection 1 of consumer-2,
// tx3").
func Struck(h *histories.History) []string {
	var out []string
	for _, ev := range h.Events {
		if ev.Fault == "" {
			continue
		}
		who := ev.Process
		if who == "" {
			who = "oncecheck"
		}
		if ev.Attempt > 0 {
			who += fmt.Sprintf(", attempt #%d", ev.Attempt)
		}
		what := ev.Detail
		if what == "" {
			what = strings.TrimPrefix(histories.Describe(ev), "!! ")
		}
		out = append(out, fmt.Sprintf("step %d, %s: %s", ev.Step, who, what))
	}
	return out
}

// Explain adds to the text of each finding of res that names messages a
// sentence saying which faults struck them, as the history recorded it:
// each fault event on an attempt at one of its messages (a crash, a cut
// connection, a pause, a dropped ack, a refused publish) or on a send of
// one of them (a re-issue, a reorder, a late copy), with its step, its
// process and attempt, its boundary and, where the history names one,
// the SQL statement at that boundary (the statement whose reply was held
// or cut, the COMMIT held, or the attempt's last SQL write before a crash
// at the broker's proxy). It says that a fault struck, never that it
// caused the anomaly; a finding whose messages no fault struck says so.
// Runner.Run calls it; it is for service-mode histories, whose fault
// events carry these details.
//
// It is idempotent: a finding that ends with its sentence already is left
// as it is. A result with no finding (a passing run) is not read.
func Explain(events histories.Stream, res *checkers.Result) error {
	if len(res.Findings) == 0 {
		return nil
	}
	var fs []struckFault
	keyOf := map[string]string{} // message id -> key
	attKey := map[int]string{}   // attempt -> key
	err := events.Each(func(ev *histories.Event) error {
		if ev.Kind == histories.Send && ev.Message != nil {
			keyOf[ev.Message.ID] = ev.Message.Key
		}
		if ev.Kind == histories.Deliver && ev.Message != nil {
			attKey[ev.Attempt] = keyOf[ev.Message.ID]
		}
		if ev.Fault == "" {
			return nil
		}
		f := struckFault{step: ev.Step, attempt: ev.Attempt, process: ev.Process, kind: ev.Kind, point: ev.Point, fault: ev.Fault, detail: ev.Detail}
		if ev.Message != nil {
			f.key, f.id = keyOf[ev.Message.ID], ev.Message.ID
		}
		if n, ok := endedAttempt(ev); ok {
			f.attempt = n
		}
		fs = append(fs, f)
		return nil
	})
	if err != nil {
		return fmt.Errorf("service: read the history to explain it: %w", err)
	}
	for i := range res.Findings {
		fd := &res.Findings[i]
		if len(fd.Keys) == 0 {
			continue
		}
		var parts []string
		for _, f := range fs {
			on := f.attempt > 0 && slices.Contains(fd.Attempts, f.attempt) || f.key != "" && slices.Contains(fd.Keys, f.key)
			if !on {
				continue
			}
			parts = append(parts, f.part(attKey[f.attempt]))
		}
		var s string
		switch len(parts) {
		case 0:
			s = fmt.Sprintf("No fault struck an attempt at %s or a send of %s.", strings.Join(fd.Keys, ", "), them(fd.Keys))
		case 1:
			s = fmt.Sprintf("The fault that struck %s: %s.", them(fd.Keys), parts[0])
		default:
			for j := range parts {
				parts[j] = fmt.Sprintf("(%d) %s", j+1, parts[j])
			}
			s = fmt.Sprintf("The %d faults that struck %s: %s.", len(parts), them(fd.Keys), strings.Join(parts, "; "))
		}
		text := strings.TrimRight(fd.Text, " ")
		if strings.HasSuffix(text, " "+s) {
			continue // explained already
		}
		if !strings.HasSuffix(text, ".") {
			text += "."
		}
		fd.Text = text + " " + s
	}
	return nil
}

// crashAfterEnd starts the detail of a crash that struck an attempt
// after it ended ("SIGKILL after attempt #3 ended: ..."): the crash event
// has no attempt (an attempt ends once) but the attempt's message.
const crashAfterEnd = "SIGKILL after attempt #"

// endedAttempt is the attempt a crash struck after it ended, read from
// its detail.
func endedAttempt(ev *histories.Event) (int, bool) {
	if ev.Kind != histories.Crash || ev.Attempt != 0 {
		return 0, false
	}
	rest, ok := strings.CutPrefix(ev.Detail, crashAfterEnd)
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, " ended: ")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	return n, err == nil && n > 0
}

func them(keys []string) string {
	if len(keys) == 1 {
		return "it"
	}
	return "them"
}

// struckFault is a fault event of a history, as Explain reads it.
type struckFault struct {
	step, attempt int
	process       string
	key, id       string // of the message the event names, if any
	kind          histories.Kind
	point, fault  string
	detail        string
}

// part is the fault event in words, for a finding: when, where, the
// boundary and the statement there; key is the key of its attempt's
// message.
func (f struckFault) part(key string) string {
	step, attempt, id, kind, point, fault, detail := f.step, f.attempt, f.id, f.kind, f.point, f.fault, f.detail
	who := f.process
	if who == "" {
		who = "oncecheck"
	}
	if attempt > 0 {
		who += fmt.Sprintf(", in attempt #%d", attempt)
		if key != "" {
			who += " (" + key + ")"
		}
	}
	boundary := point
	switch {
	case boundary != "":
	case kind == histories.AckLost:
		boundary = "its ack (" + faults.AckLost + ")"
	case kind == histories.Refused:
		boundary = "a publish (" + fault + ")"
	case kind == histories.Requeue && fault == string(faults.Redelivery):
		boundary = faults.LeaseExpired + " (a pause)"
	default:
		boundary = fault
	}
	at := fmt.Sprintf("step %d, %s, at the boundary %s", step, who, boundary)
	head, where, _ := strings.Cut(detail, "; ")
	switch {
	case kind == histories.Send:
		what := fmt.Sprintf("the sender published it as %s (%s)", id, fault)
		if detail != "" {
			what += ": " + detail
		}
		return fmt.Sprintf("step %d, %s; no SQL statement at this boundary", step, what)
	case kind == histories.Requeue && fault == string(faults.Late):
		return fmt.Sprintf("step %d, late: %s; no SQL statement at this boundary", step, strings.TrimPrefix(detail, "late: "))
	case kind == histories.Crash:
		what := strings.TrimPrefix(head, "SIGKILL: ")
		if rest, ok := strings.CutPrefix(head, "SIGKILL of its process: "); ok {
			at = fmt.Sprintf("step %d, %s: its process was killed at a fault planned on another attempt, at the boundary %s", step, who, boundary)
			what = rest
		}
		if _, rest, ok := strings.Cut(head, " ended: "); ok && strings.HasPrefix(head, crashAfterEnd) {
			at = fmt.Sprintf("step %d, %s, after the attempt ended, at the boundary %s", step, who, boundary)
			what = rest
		}
		switch {
		case where != "":
			return fmt.Sprintf("%s: %s; %s", at, what, where)
		case faults.Point(point) == faults.BeforeHandle:
			return fmt.Sprintf("%s: %s; no SQL statement: the process never got the copy", at, what)
		}
		return fmt.Sprintf("%s: %s; the attempt has no SQL write in the history before it (reads are not recorded)", at, what)
	case kind == histories.Abort && fault == string(faults.CutConnection):
		return fmt.Sprintf("%s: %s", at, detail)
	case kind == histories.Requeue && fault == string(faults.Redelivery):
		if where != "" {
			return fmt.Sprintf("%s: %s; %s", at, head, where)
		}
		return fmt.Sprintf("%s: %s; no SQL statement at this boundary", at, head)
	}
	if detail == "" {
		detail = fault
	}
	return fmt.Sprintf("%s: %s; no SQL statement at this boundary", at, detail)
}
