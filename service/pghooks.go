package service

import (
	"fmt"
	"slices"
	"strings"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

// current is the attempt a process works on: its latest delivery, open
// or acknowledged (a service may ack before its work is done).
func (p *proc) current() *attempt { return p.latest }

// isCommit reports whether a statement commits the open transaction.
func isCommit(sql string) bool {
	s := strings.ToUpper(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(sql), ";")))
	return s == "COMMIT" || s == "END" || strings.HasPrefix(s, "COMMIT ") || strings.HasPrefix(s, "END ")
}

// isWrite reports whether a command tag is a write's.
func isWrite(tag string) bool {
	for _, w := range []string{"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"} {
		if strings.HasPrefix(tag, w) {
			return true
		}
	}
	return false
}

// shortSQL renders a statement on one line, cut at 80 characters.
func shortSQL(sql string) string {
	s := strings.Join(strings.Fields(sql), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// statement implements pgHooks: a COMMIT on its way to the server may be
// where a crash strikes (before-commit).
func (rn *run) statement(c *pgConn, sql string) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		return verdict{cut: true}
	}
	a := p.current()
	if len(rn.c.Order) > 0 && rn.gate == nil {
		rn.gate = newGate(rn.c.Order)
	}
	if a != nil {
		a.sent++ // before it is held: the process sent it
	}
	if !rn.follow(c, a, sql) {
		return verdict{cut: true}
	}
	if a == nil || !isCommit(sql) {
		return verdict{}
	}
	for _, fl := range a.faults {
		if fl.Kind == faults.Crash && fl.Point == faults.BeforeCommit && fl.Index == a.commits {
			rn.killAt(p, a, fl, fmt.Sprintf("the statement held: %s, on db connection %d of %s, in tx%d", shortSQL(sql), c.id, p.name(), c.tx))
			return verdict{cut: true}
		}
	}
	if c.q != nil {
		if v, ok := rn.queueCommitting(c, p, sql); ok {
			return v
		}
	}
	return verdict{}
}

// killAt kills a process at a fault, as kill does, and adds where to the
// detail of its crash events: for a fault at the PostgreSQL proxy, the
// statement and the connection; at the broker's proxy, the attempt's last
// SQL write (lastWrite); rn.mu is held.
func (rn *run) killAt(p *proc, a *attempt, fl faults.Fault, where string) {
	from := len(rn.events)
	rn.kill(p, a, fl)
	if where == "" {
		return
	}
	for i := from; i < len(rn.events); i++ {
		if rn.events[i].Kind == histories.Crash {
			rn.events[i].Detail += "; " + where
		}
	}
}

// cut closes the connection of attempt a at a cut-connection fault, as
// the server's reply to statement sql of transaction c.tx comes back; rn.mu
// is held. The fault strikes once.
func (rn *run) cut(c *pgConn, p *proc, a *attempt, sql, tag string) (verdict, bool) {
	k := c.txStmts
	c.txStmts++
	for i, fl := range a.faults {
		if fl.Kind != faults.CutConnection || fl.Index != k {
			continue
		}
		a.faults = slices.Delete(a.faults, i, i+1)
		rn.begun(c, a)
		rn.add(histories.Event{Kind: histories.Abort, Attempt: a.n, Tx: c.tx, Process: p.name(), Fault: string(fl.Kind),
			Detail: fmt.Sprintf("the proxy cut db connection %d of %s, both sides, as the server's reply to %s (%s, statement #%d of tx%d) came back: the server rolls tx%d back, the process sees a broken connection",
				c.id, p.name(), shortSQL(sql), tag, k+1, c.tx, c.tx)})
		return verdict{cut: true}, true
	}
	return verdict{}, false
}

// result implements pgHooks: the server completed a statement. Begins,
// writes, commits and rollbacks are recorded against the process's
// current attempt; a write outside a transaction commits by itself. A
// crash may strike after a write or a commit, before the process sees
// the server's reply.
func (rn *run) result(c *pgConn, sql, tag string, inTx bool) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		return verdict{cut: true}
	}
	a := p.current()
	n := 0
	if a != nil {
		n = a.n
	}
	if c.q == nil || tagKind(tag) != histories.Begin {
		rn.completed(a, tag) // a queue's BEGIN is not followed (OrderOf)
	}
	where := fmt.Sprintf("%s, db connection %d of %s", tag, c.id, p.name())
	var point faults.Point
	index := 0
	curTx := c.tx
	inTxName := func() string {
		if inTx || curTx != c.tx || strings.HasPrefix(tag, "BEGIN") || strings.HasPrefix(tag, "START") {
			return fmt.Sprintf("tx%d", curTx)
		}
		return "outside a transaction"
	}
	switch {
	case strings.HasPrefix(tag, "BEGIN") || strings.HasPrefix(tag, "START"):
		rn.txs++
		c.tx, c.txStmts = rn.txs, 0
		curTx = c.tx
		ev := histories.Event{Kind: histories.Begin, Attempt: n, Tx: c.tx, Process: p.name(), Detail: where}
		if c.q != nil {
			c.q.begin = &ev // recorded once the transaction writes or takes a job (pgqueue.go)
		} else {
			rn.add(ev)
		}
	case isWrite(tag) && c.q != nil && noRows(tag):
		// Nothing written: a worker's poll that found no job, or a
		// fenced write that matched nothing. Not recorded on a queue.
	case isWrite(tag):
		rn.begun(c, a)
		tx := c.tx
		if !inTx {
			rn.txs++
			tx = rn.txs
		}
		curTx = tx
		rn.add(histories.Event{Kind: histories.Write, Attempt: n, Tx: tx, Process: p.name(), Detail: fmt.Sprintf("%s (%s, step %d)", shortSQL(sql), where, len(rn.events)+1)})
		if a != nil {
			point, index = faults.AfterWrite, a.writes
			a.writes++
		}
		if !inTx {
			rn.add(histories.Event{Kind: histories.Commit, Attempt: n, Tx: tx, Process: p.name(), Detail: "the statement committed by itself (no transaction open)"})
			if c.q != nil { // unless its implicit transaction rolls back (pgqueue.go)
				c.q.autoCommits = append(c.q.autoCommits, len(rn.events)-1)
			}
			if a != nil {
				if rn.strikes(a, faults.AfterCommit, a.commits) {
					point, index = faults.AfterCommit, a.commits
				}
				a.commits++
			}
		}
	case (tag == "COMMIT" || tag == "ROLLBACK") && c.q != nil && c.q.begin != nil && c.q.scope.empty():
		// A transaction that neither wrote nor took a job (a worker's
		// poll): not recorded on a queue.
		c.q.begin = nil
	case tag == "COMMIT":
		rn.begun(c, a) // a job written only by a function: its begin is held still
		rn.add(histories.Event{Kind: histories.Commit, Attempt: n, Tx: c.tx, Process: p.name(), Detail: where})
		if a != nil {
			point, index = faults.AfterCommit, a.commits
			a.commits++
		}
	case tag == "ROLLBACK":
		rn.begun(c, a)
		rn.add(histories.Event{Kind: histories.Abort, Attempt: n, Tx: c.tx, Process: p.name(), Detail: where})
	}
	if c.q != nil {
		if v, ok := rn.queueResult(c, p, tag); ok {
			return v
		}
	}
	if a != nil && point != "" {
		for _, fl := range a.faults {
			if fl.Kind == faults.Crash && fl.Point == point && fl.Index == index {
				if c.q != nil && !inTx {
					// The statement committed by itself: what it did to
					// the queue is settled before the crash.
					c.q.autoCommits = nil
					if v, ok := rn.settle(c, p, true, "outside a transaction", true); ok {
						return v
					}
				}
				rn.killAt(p, a, fl, fmt.Sprintf("the statement: %s (%s), its reply held, on db connection %d of %s, %s", shortSQL(sql), tag, c.id, p.name(), inTxName()))
				return verdict{cut: true}
			}
		}
	}
	if a == nil {
		return verdict{}
	}
	if inTx && c.tx != 0 && !strings.HasPrefix(tag, "BEGIN") && !strings.HasPrefix(tag, "START") && tag != "COMMIT" && tag != "ROLLBACK" {
		if v, ok := rn.cut(c, p, a, sql, tag); ok {
			return v
		}
	}
	a.stmts++
	for _, fl := range a.faults {
		if fl.Kind == faults.Redelivery && fl.Variant == faults.LeaseExpired && fl.Index >= pauseAtStatement && fl.Index-pauseAtStatement == a.stmts-1 {
			// The server's reply waits while the process stands still.
			where := fmt.Sprintf("the reply held: to %s (%s), on db connection %d of %s, %s", shortSQL(sql), tag, c.id, p.name(), inTxName())
			if !rn.pauseHeld(p, a, fl, where, c.gen) {
				return verdict{cut: true}
			}
		}
	}
	return verdict{}
}

// strikes reports whether a crash of attempt a is planned at point, index.
func (rn *run) strikes(a *attempt, point faults.Point, index int) bool {
	for _, fl := range a.faults {
		if fl.Kind == faults.Crash && fl.Point == point && fl.Index == index {
			return true
		}
	}
	return false
}

// lastWrite names the last SQL write the server ran for attempt a, with
// its connection, as the history recorded it ("" if none); rn.mu is held.
func (rn *run) lastWrite(a *attempt) string {
	if a == nil {
		return ""
	}
	for i := len(rn.events) - 1; i >= 0; i-- {
		ev := rn.events[i]
		if ev.Attempt == a.n && ev.Kind == histories.Write {
			return fmt.Sprintf("the attempt's last SQL write (step %d, tx%d): %s", ev.Step, ev.Tx, ev.Detail)
		}
		if ev.Attempt == a.n && ev.Kind == histories.Deliver {
			break
		}
	}
	return ""
}

// notePause adds the statement whose reply a pause held to the detail of
// the pause's event, the last requeue event of p's attempt a; rn.mu is
// held.
func (rn *run) notePause(p *proc, a *attempt, where string) {
	for i := len(rn.events) - 1; i >= 0; i-- {
		ev := &rn.events[i]
		if ev.Kind == histories.Requeue && ev.Process == p.name() && ev.Fault == string(faults.Redelivery) {
			ev.Detail += "; " + where
			return
		}
		if ev.Attempt == a.n && ev.Kind == histories.Deliver {
			return
		}
	}
}
