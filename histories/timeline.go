package histories

import (
	"fmt"
	"strings"
)

// Timeline renders the events as step-numbered lines for people: step,
// process, attempt or pass, and what happened. Faults are marked with "!!".
func (h *History) Timeline() []string {
	width := 0
	for _, ev := range h.Events {
		width = max(width, len(ev.Process))
	}
	lines := make([]string, 0, len(h.Events))
	for _, ev := range h.Events {
		lines = append(lines, fmt.Sprintf("%4d  %-*s  %-8s %s", ev.Step, width, ev.Process, Scope(ev), Describe(ev)))
	}
	return lines
}

// Scope names the attempt ("#3") or dispatcher pass ("pass 2") of an
// event, or "".
func Scope(ev Event) string {
	switch {
	case ev.Attempt != 0:
		return fmt.Sprintf("#%d", ev.Attempt)
	case ev.Pass != 0:
		return fmt.Sprintf("pass %d", ev.Pass)
	}
	return ""
}

// Describe renders what an event did in a few words, for people; faults
// start with "!!".
func Describe(ev Event) string {
	msg := func() string {
		if ev.Message == nil {
			return ""
		}
		m := ev.Message
		s := m.Type
		if len(m.Payload) > 0 {
			s += string(m.Payload)
		}
		return s
	}
	with := func(s string) string {
		if ev.Detail != "" {
			return s + " (" + ev.Detail + ")"
		}
		return s
	}
	switch ev.Kind {
	case Send:
		s := fmt.Sprintf("send %s key=%s %s to %s", ev.Message.ID, ev.Message.Key, msg(), ev.Message.Aggregate)
		if ev.Fault != "" {
			s = "!! " + s
		}
		return with(s)
	case Deliver:
		s := fmt.Sprintf("deliver %s key=%s %s", ev.Message.ID, ev.Message.Key, msg())
		if ev.Fault != "" {
			s = "!! " + s
		}
		return with(s)
	case Begin:
		return fmt.Sprintf("begin tx%d", ev.Tx)
	case Write:
		return fmt.Sprintf("write tx%d %s", ev.Tx, ev.Detail)
	case Commit:
		return fmt.Sprintf("commit tx%d", ev.Tx)
	case Abort:
		return with(fmt.Sprintf("abort tx%d", ev.Tx))
	case Publish:
		return fmt.Sprintf("publish %s id=%s cause=%s", msg(), ev.Message.ID, ev.Message.Causation)
	case Crash:
		return fmt.Sprintf("!! CRASH at %s", ev.Point)
	case AckLost:
		if ev.Detail != "" {
			return "!! ACK LOST: " + ev.Detail
		}
		return "!! ACK LOST: the copy will be delivered again"
	case Observe:
		return fmt.Sprintf("final state of %s: %s", ev.Aggregate, ev.State)
	case Undrained:
		return "!! STUCK: " + ev.Detail
	case Drain:
		return "drain: no more faults"
	case CacheCmd:
		return "cache " + ev.Detail
	case Requeue:
		if ev.Fault == "" {
			return ev.Detail // the log broker's rebalance on a join or a crash
		}
		return "!! " + with("REQUEUE")
	case Refused, Switch:
		return "!! " + with(strings.ToUpper(string(ev.Kind)))
	}
	return with(strings.ReplaceAll(string(ev.Kind), "-", " "))
}
