package service

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

// Order is the order in which a saved history's transactions began,
// wrote and committed across processes: a replay that follows it holds
// each BEGIN, write and COMMIT at the PostgreSQL proxy until the ones
// recorded before it have been done, up to orderWait each, then lets it
// go (free running again). It pins races between processes, which a
// replay of the plan alone leaves to the operating system's scheduler.
type Order []OrderStep

// OrderStep is one SQL event of an Order: the copy (message id) whose
// attempt ran it, what it was, and how many of the same kind that copy's
// attempts ran before it.
type OrderStep struct {
	ID   string
	Kind histories.Kind // begin, write or commit
	N    int
}

// orderWait bounds how long a statement is held for the ones recorded
// before it: past it, the replay runs free.
const orderWait = 400 * time.Millisecond

// byItself is the start of the detail of the commit of a statement that
// committed by itself (pghooks.go), which is the write's, not a step of
// its own.
const byItself = "the statement committed by itself"

// OrderOf reads the order of a saved history's SQL events. On a
// PostgreSQL queue a BEGIN comes before the job its transaction takes, so
// a re-run cannot tell whose it is as it goes to the server: its begins
// are not followed, their transactions' writes and commits are.
func OrderOf(h *histories.History) Order {
	queue := h.Header.Tool == "service mode on postgres"
	ids := map[int]string{}
	counts := map[OrderStep]int{}
	var o Order
	for _, ev := range h.Events {
		switch ev.Kind {
		case histories.Deliver:
			if ev.Message != nil {
				ids[ev.Attempt] = ev.Message.ID
			}
		case histories.Begin, histories.Write, histories.Commit:
			id, ok := ids[ev.Attempt]
			if !ok || ev.Kind == histories.Commit && strings.HasPrefix(ev.Detail, byItself) || queue && ev.Kind == histories.Begin {
				continue
			}
			k := OrderStep{ID: id, Kind: ev.Kind}
			s := k
			s.N = counts[k]
			counts[k]++
			o = append(o, s)
		}
	}
	return o
}

// gate is the state of a replay that follows an Order, under run.mu.
type gate struct {
	order   Order
	index   map[OrderStep]int // the position of each step in order
	done    []bool
	sent    map[OrderStep]int // statements held or forwarded, per copy and kind
	results map[OrderStep]int // statements the server completed, per copy and kind
	changed chan struct{}     // closed when a step is done
	held    time.Duration     // how long statements were held in all
	free    int               // statements let go at orderWait
}

func newGate(o Order) *gate {
	g := &gate{order: o, index: map[OrderStep]int{}, done: make([]bool, len(o)), sent: map[OrderStep]int{}, results: map[OrderStep]int{}, changed: make(chan struct{})}
	for i, s := range o {
		g.index[s] = i
	}
	return g
}

// stmtKind classifies a statement's text as an Order's kinds do, "" for
// any other statement.
func stmtKind(sql string) histories.Kind {
	s := strings.ToUpper(strings.TrimSpace(sql))
	switch {
	case strings.HasPrefix(s, "BEGIN") || strings.HasPrefix(s, "START"):
		return histories.Begin
	case isCommit(sql):
		return histories.Commit
	}
	for _, w := range []string{"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"} {
		if strings.HasPrefix(s, w) {
			return histories.Write
		}
	}
	return ""
}

// tagKind classifies a command tag as an Order's kinds do.
func tagKind(tag string) histories.Kind {
	switch {
	case strings.HasPrefix(tag, "BEGIN") || strings.HasPrefix(tag, "START"):
		return histories.Begin
	case tag == "COMMIT":
		return histories.Commit
	case isWrite(tag):
		return histories.Write
	}
	return ""
}

// follow holds statement sql of attempt a until the steps recorded before
// it are done, or orderWait passes; rn.mu is held, and released while it
// waits. It reports whether c's process is still alive after.
func (rn *run) follow(c *pgConn, a *attempt, sql string) bool {
	g := rn.gate
	if g == nil || a == nil {
		return true
	}
	k := stmtKind(sql)
	if k == "" || k == histories.Begin && c.q != nil {
		return true
	}
	s := OrderStep{ID: a.msg.ID, Kind: k}
	s.N = g.sent[s]
	g.sent[OrderStep{ID: a.msg.ID, Kind: k}]++
	i, ok := g.index[s]
	if !ok {
		return true
	}
	start := time.Now()
	deadline := time.NewTimer(orderWait)
	defer deadline.Stop()
	for !g.ready(i) {
		ch := g.changed
		rn.mu.Unlock()
		timeout := false
		select {
		case <-ch:
		case <-deadline.C:
			timeout = true
		case <-rn.ctx.Done():
			timeout = true
		}
		rn.mu.Lock()
		if timeout {
			// What was recorded before it did not happen (yet): the
			// replay runs free from here, without waiting for it again.
			g.free++
			g.skip(i)
			break
		}
	}
	g.held += time.Since(start)
	p := rn.procs[c.index]
	return p.gen == c.gen && !p.dead
}

// skip marks every step before step i as done.
func (g *gate) skip(i int) {
	for j := range i {
		g.done[j] = true
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

// ready reports whether every step before step i is done.
func (g *gate) ready(i int) bool {
	for j := range i {
		if !g.done[j] {
			return false
		}
	}
	return true
}

// completed marks the step of a statement the server completed for
// attempt a as done; rn.mu is held.
func (rn *run) completed(a *attempt, tag string) {
	g := rn.gate
	if g == nil || a == nil {
		return
	}
	k := tagKind(tag)
	if k == "" {
		return
	}
	s := OrderStep{ID: a.msg.ID, Kind: k}
	s.N = g.results[s]
	g.results[OrderStep{ID: a.msg.ID, Kind: k}]++
	if i, ok := g.index[s]; ok && !g.done[i] {
		g.done[i] = true
		close(g.changed)
		g.changed = make(chan struct{})
	}
}

// pauseSent starts the note that a pause as a copy reaches its process
// (lease-expired, Index 0) adds to its event's detail: how many SQL
// statements, reads included, the attempt had sent when the SIGSTOP
// took effect. The proxy holds no statement there, so that is up to the
// operating system; Replan reads it back.
const pauseSent = "statements the attempt had sent as it took effect: "

// Replan returns the fault plan of a replay that follows saved history h
// (with OrderOf), and one line per fault it re-applies, for the report.
// A pause as a copy reaches its process races the process's first
// statements, reads included, which the proxy does not hold; when h shows
// that the paused attempt had sent k > 0 statements as the pause took
// effect, the replay pauses it at the equivalent boundary the proxy
// holds: as the server's reply to statement k-1 (from 0) comes back
// (Index pauseAtStatement+k-1). Every other fault is kept as saved, and
// so is the pause when h does not say (a history of an earlier version)
// or says 0. h itself is not changed.
func Replan(h *histories.History) (faults.Plan, []string) {
	plan := h.Header.Plan
	plan.Faults = slices.Clone(plan.Faults)
	var notes []string
	for i, f := range plan.Faults {
		if f.Kind != faults.Redelivery || f.Variant != faults.LeaseExpired || f.Index != 0 {
			continue
		}
		k, ok := pausedAfter(h, f.At+1)
		if !ok || k == 0 {
			continue
		}
		g := f
		g.Index = pauseAtStatement + k - 1
		plan.Faults[i] = g
		what := "1 SQL statement"
		if k > 1 {
			what = fmt.Sprintf("%d SQL statements", k)
		}
		notes = append(notes, fmt.Sprintf("the pause of delivery #%d as the copy reached it took effect once its attempt had sent %s; re-applied there: %s", f.At+1, what, Describe(g)))
	}
	return plan, notes
}

// pausedAfter reads, from the pause event of attempt n in h, how many
// statements the attempt had sent as the pause took effect.
func pausedAfter(h *histories.History, n int) (int, bool) {
	for _, ev := range h.Events {
		if ev.Kind != histories.Requeue || ev.Attempt != n || ev.Fault != string(faults.Redelivery) {
			continue
		}
		_, rest, ok := strings.Cut(ev.Detail, pauseSent)
		if !ok {
			return 0, false
		}
		end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if end < 0 {
			end = len(rest)
		}
		k, err := strconv.Atoi(rest[:end])
		return k, err == nil
	}
	return 0, false
}
