package service

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// A PostgreSQL table used as the queue (docs/service-mode-postgres.md) is
// seen at the PostgreSQL proxy of each process:
//
//   - a delivery is a row of a result carrying the queue table's id column
//     (PostgreSQL's RowDescription names the table and column a result
//     column comes from) with a copy's id that the process does not hold
//     already;
//   - the triggers oncecheck puts on the queue table report, on the
//     writing connection, each job a statement updated or deleted and
//     whether it is finished after it; on the outputs table, each row
//     inserted. The proxy reads these notices and does not forward them;
//   - what a transaction delivered, wrote and inserted is settled at its
//     end (its COMMIT or ROLLBACK; for statements outside a transaction,
//     the end of their implicit one, the server's ReadyForQuery, committed
//     unless one of them failed): at a commit, each job it
//     finished is the ack of the process's attempt holding it, and each
//     output inserted is published; a delivery it locked but did not
//     write is over (a nack: its row lock is gone); a delivery it wrote
//     without finishing stays with the process (a lease). At a rollback,
//     every delivery it took is over, and nothing it wrote or inserted
//     counts.

// pgQueueConn is what the proxy follows of one connection for the queue.
// The protocol part is under the connection's mu; the scope under the
// run's.
type pgQueueConn struct {
	colBySQL map[string]int // a statement's text -> the index of the id column in its rows (-1: none)
	expect   []pgReq        // the client's requests whose answers are due, in order
	cur      int            // the id column of the simple query's current result
	failed   bool           // an error since the last ReadyForQuery: an implicit transaction rolls back
	// heardCh, while queueSync waits for the server, is closed by the
	// next message of the server.
	heardCh chan struct{}

	// Under the run's mu: the open transaction's begin event, held until
	// the transaction writes or takes a job, and the scope.
	begin *histories.Event
	scope pgScope
	// autoCommits are the commit events (indices in the run's events)
	// of the writes outside a transaction since the connection was last
	// idle: their implicit transaction's, undone if it rolls back.
	autoCommits []int
}

// pgReq is a request whose answer the proxy waits for: its message type,
// and for a Describe or an Execute the text of the statement concerned.
type pgReq struct {
	kind byte
	sql  string
}

// pgScope is what the open transaction of a connection (or its statement
// outside one) delivered, did to jobs and inserted into the outputs table.
type pgScope struct {
	delivered []scopedDelivery
	written   map[string]bool // job id -> finished after the scope's last write of it
	order     []string        // the jobs written, in order
	outputs   []scopedOutput
}

// empty reports whether the scope holds nothing: its transaction neither
// took nor wrote a job, nor inserted an output.
func (s *pgScope) empty() bool {
	return len(s.delivered) == 0 && len(s.order) == 0 && len(s.outputs) == 0
}

type scopedDelivery struct {
	a    *attempt
	inTx bool // delivered inside an explicit transaction
}

type scopedOutput struct {
	a     *attempt // the process's current attempt as the row was inserted
	index int      // the row's number among the attempt's outputs inserted
	out   pgNotice
}

func newPGQueueConn() *pgQueueConn { return &pgQueueConn{colBySQL: map[string]int{}, cur: -1} }

// pgQueueHooks are what the proxy reports of the queue (implemented by
// *run).
type pgQueueHooks interface {
	// queueColumn returns the queue table's oid and its id column's
	// number; ok is false when the run has no PostgreSQL queue.
	queueColumn() (oid uint32, attnum uint16, ok bool)
	// queueID reads a copy's id from a value of the queue's id column.
	queueID(v []byte) (string, bool)
	// queueRow: a result row of c carries job id.
	queueRow(c *pgConn, id string) verdict
	// queueNotice: a trigger's notice reached c.
	queueNotice(c *pgConn, n pgNotice) verdict
	// queueSync: the client of c sends a Sync, which ends an implicit
	// transaction.
	queueSync(c *pgConn) verdict
	// queueIdle: c is ready for a query outside a transaction (committed:
	// no statement failed since it was last ready), or gone; what its
	// scope still holds was committed or rolled back with the implicit
	// transaction that ended. closed: the connection is gone.
	queueIdle(c *pgConn, committed, closed bool) verdict
}

// client follows a request of the client; c.mu is held (and c.stmts and
// c.portals updated for it).
func (q *pgQueueConn) client(c *pgConn, m pgMessage) {
	switch m.typ {
	case 'Q', 'P', 'B', 'C', 'S', 'F':
		q.expect = append(q.expect, pgReq{kind: m.typ})
	case 'D':
		var d pgproto3.Describe
		if d.Decode(m.body) == nil {
			sql := c.portals[d.Name]
			if d.ObjectType == 'S' {
				sql = c.stmts[d.Name]
			}
			q.expect = append(q.expect, pgReq{kind: 'D', sql: sql})
		}
	case 'E':
		var e pgproto3.Execute
		if e.Decode(m.body) == nil {
			q.expect = append(q.expect, pgReq{kind: 'E', sql: c.portals[e.Portal]})
		}
	}
}

// heard wakes queueSync, if it waits, at a message of the server or its
// connection's end.
func (q *pgQueueConn) heard(c *pgConn) {
	c.mu.Lock()
	if q.heardCh != nil {
		close(q.heardCh)
		q.heardCh = nil
	}
	c.mu.Unlock()
}

// syncWait bounds how long a Sync is held for the server to complete
// the statements before it.
const syncWait = 2 * time.Second

// popThrough drops the requests up to and including the first of one of
// kinds; none when there is none.
func (q *pgQueueConn) popThrough(kinds string) {
	for i, r := range q.expect {
		if strings.IndexByte(kinds, r.kind) >= 0 {
			q.expect = q.expect[i+1:]
			return
		}
	}
}

// first returns the first request due of one of kinds.
func (q *pgQueueConn) first(kinds string) (int, *pgReq) {
	for i := range q.expect {
		if strings.IndexByte(kinds, q.expect[i].kind) >= 0 {
			return i, &q.expect[i]
		}
	}
	return -1, nil
}

// idColumn is the index of the queue's id column in a row description,
// -1 if it has none.
func idColumn(body []byte, oid uint32, attnum uint16) int {
	var rd pgproto3.RowDescription
	if rd.Decode(body) != nil {
		return -1
	}
	for i, f := range rd.Fields {
		if f.TableOID == oid && f.TableAttributeNumber == attnum {
			return i
		}
	}
	return -1
}

// queueServer follows a message of the server for the queue. It returns
// handled when it judged the message itself (a delivery, a trigger's
// notice); the proxy's own handling goes on otherwise.
func (p *pgProxy) queueServer(c *pgConn, m pgMessage) (verdict, bool) {
	qh := p.hooks.(pgQueueHooks)
	q := c.q
	switch m.typ {
	case '1':
		c.mu.Lock()
		q.popThrough("P")
		c.mu.Unlock()
	case '2':
		c.mu.Lock()
		q.popThrough("B")
		c.mu.Unlock()
	case '3':
		c.mu.Lock()
		q.popThrough("C")
		c.mu.Unlock()
	case 'T', 'n':
		oid, attnum, _ := qh.queueColumn()
		col := -1
		if m.typ == 'T' {
			col = idColumn(m.body, oid, attnum)
		}
		c.mu.Lock()
		if i, r := q.first("DQ"); r != nil {
			if r.kind == 'Q' {
				q.cur = col
			} else {
				q.colBySQL[r.sql] = col
				q.expect = q.expect[i+1:]
			}
		}
		c.mu.Unlock()
	case 'D':
		c.mu.Lock()
		col := -1
		if _, r := q.first("EQ"); r != nil {
			if r.kind == 'Q' {
				col = q.cur
			} else if n, ok := q.colBySQL[r.sql]; ok {
				col = n
			}
		}
		c.mu.Unlock()
		if col < 0 {
			return verdict{}, false
		}
		var row pgproto3.DataRow
		if row.Decode(m.body) != nil || col >= len(row.Values) || row.Values[col] == nil {
			return verdict{}, false
		}
		id, ok := qh.queueID(row.Values[col])
		if !ok {
			return verdict{}, false
		}
		return qh.queueRow(c, id), true
	case 'C', 'I', 's':
		c.mu.Lock()
		if i, r := q.first("EQ"); r != nil {
			if r.kind == 'E' {
				q.expect = q.expect[i+1:]
			} else {
				q.cur = -1
			}
		}
		c.mu.Unlock()
	case 'E':
		c.mu.Lock()
		q.failed = true
		if i, r := q.first("QS"); r == nil || r.kind == 'S' {
			// The server skips what was sent up to the next Sync.
			if i < 0 {
				q.expect = nil
			} else {
				q.expect = q.expect[i:]
			}
		}
		c.mu.Unlock()
	case 'Z':
		var z pgproto3.ReadyForQuery
		idle := z.Decode(m.body) == nil && z.TxStatus == 'I'
		c.mu.Lock()
		q.popThrough("SQF")
		q.cur = -1
		failed := q.failed
		if idle {
			q.failed = false
		}
		c.mu.Unlock()
		if idle {
			// The implicit transaction of the statements outside a
			// transaction ends here: the reply waits while it is settled.
			if v := qh.queueIdle(c, !failed, false); v.cut {
				return v, true
			}
		}
	case 'N':
		var n pgproto3.NoticeResponse
		if n.Decode(m.body) != nil {
			return verdict{}, false
		}
		nt, ok := parseNotice(n.Message)
		if !ok {
			return verdict{}, false
		}
		v := qh.queueNotice(c, nt)
		v.drop = true
		return v, true
	}
	return verdict{}, false
}

// begun records the begin event of c's transaction if it is still held,
// as a begin of attempt a (nil: the one it was held with): the attempt
// the transaction's first write, or the job it takes, belongs to, not
// the one current at BEGIN, which a worker sends before it takes its
// next job; rn.mu is held.
func (rn *run) begun(c *pgConn, a *attempt) {
	if c.q != nil && c.q.begin != nil {
		ev := *c.q.begin
		if a != nil {
			ev.Attempt = a.n
		}
		rn.add(ev)
		c.q.begin = nil
	}
}

// noRows reports whether a write's command tag says it changed no row
// ("UPDATE 0", "INSERT 0 0").
func noRows(tag string) bool {
	f := strings.Fields(tag)
	return len(f) > 1 && f[len(f)-1] == "0"
}

// queueBroker is the run's PostgreSQL queue, nil on another broker.
func (rn *run) queueBroker() *pgBroker {
	b, _ := rn.r.b.(*pgBroker)
	return b
}

// queueColumn implements pgQueueHooks.
func (rn *run) queueColumn() (uint32, uint16, bool) {
	b := rn.queueBroker()
	if b == nil {
		return 0, 0, false
	}
	oid, attnum := b.column()
	return oid, attnum, true
}

// queueID implements pgQueueHooks.
func (rn *run) queueID(v []byte) (string, bool) {
	b := rn.queueBroker()
	if b == nil {
		return "", false
	}
	return b.idValue(v)
}

// holding returns the open attempt of p on copy id, nil if none; rn.mu
// is held.
func holding(p *proc, id string) *attempt {
	for _, a := range slices.Backward(p.open) {
		if a.msg.ID == id {
			return a
		}
	}
	return nil
}

// queueRow implements pgQueueHooks: a row of the queue reaches a process.
// It is a delivery unless the process holds the job already (a worker
// reads the row it claimed again, or finishes it with RETURNING).
func (rn *run) queueRow(c *pgConn, id string) verdict {
	c.mu.Lock()
	inTx := c.inTx
	c.mu.Unlock()
	rn.mu.Lock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		rn.mu.Unlock()
		return verdict{cut: true}
	}
	if _, sent := rn.sent[id]; !sent || holding(p, id) != nil {
		rn.mu.Unlock()
		return verdict{}
	}
	n := rn.queueBroker().delivered(id)
	rn.mu.Unlock()
	token := id + "#" + strconv.Itoa(n)
	v := rn.delivered(&c.proxyConn, delivery{id: id, count: strconv.Itoa(n), token: token})
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if a := rn.byToken[token]; a != nil && !v.cut {
		rn.begun(c, a) // the transaction that takes the job is the job's
		c.q.scope.delivered = append(c.q.scope.delivered, scopedDelivery{a: a, inTx: inTx})
	}
	return v
}

// queueNotice implements pgQueueHooks: a trigger reports a job written,
// or an output inserted, by the statement running on c. A crash
// before-publish strikes as the server reports the insert of the
// attempt's output number Index (the transaction open, the reply held).
func (rn *run) queueNotice(c *pgConn, n pgNotice) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		return verdict{cut: true}
	}
	s := &c.q.scope
	if n.Kind == "queue" {
		// The transaction wrote a job the process holds: its begin is
		// recorded, even when the write is a function's, unseen in the
		// statement's tag. A job it does not hold yet may be the one it
		// is taking: its delivery, or the transaction's end, records it.
		if a := holding(p, n.ID); a != nil {
			rn.begun(c, a)
		}
		if s.written == nil {
			s.written = map[string]bool{}
		}
		if _, ok := s.written[n.ID]; !ok {
			s.order = append(s.order, n.ID)
		}
		s.written[n.ID] = n.Done
		return verdict{}
	}
	a := p.current()
	rn.begun(c, a)
	if a == nil {
		s.outputs = append(s.outputs, scopedOutput{out: n})
		return verdict{}
	}
	index := a.publishes
	a.publishes++
	s.outputs = append(s.outputs, scopedOutput{a: a, index: index, out: n})
	for _, fl := range a.faults {
		if fl.Kind == faults.Crash && fl.Point == faults.BeforePublish && fl.Index == index {
			rn.killAt(p, a, fl, fmt.Sprintf("the insert of output %s held, not committed, on db connection %d of %s, tx%d", n.ID, c.id, p.name(), c.tx))
			return verdict{cut: true}
		}
	}
	return verdict{}
}

// queueIdle implements pgQueueHooks: the connection is idle outside a
// transaction, or closed. What its scope still holds is that of the
// statements outside a transaction since it was last idle, one implicit
// transaction (a multi-statement simple query, an extended-protocol
// pipeline up to its Sync), committed unless one of them failed; or of a
// transaction that rolled back without a ROLLBACK (a COMMIT that failed,
// a connection cut or closed).
//
// A write outside a transaction was recorded as committing by itself:
// when a statement of its implicit transaction failed, its commit event
// becomes an abort. (When the connection closes first, whether the
// server got the Sync that commits it is not known: it stays.)
func (rn *run) queueIdle(c *pgConn, committed, closed bool) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if !committed && !closed {
		rn.rolledBack(c, "a statement of it failed")
	}
	c.q.autoCommits = nil
	if p.gen != c.gen || p.dead || c.q.scope.empty() {
		return verdict{}
	}
	if !committed {
		v, _ := rn.settle(c, p, false, "", false)
		return v
	}
	v, _ := rn.settle(c, p, true, "outside a transaction", true)
	return v
}

// queueSync implements pgQueueHooks. Outside an explicit transaction, a
// Sync of the extended protocol commits the implicit transaction of the
// statements before it: when one of them finished a job whose attempt
// has a crash before-ack, or a lease-expired pause at the ack (index 1),
// planned, the Sync is held until the server has completed them, and
// the fault strikes there, before the commit (the crash: the Sync is not
// forwarded, the server rolls back). Without such a plan the Sync goes on
// at once.
func (rn *run) queueSync(c *pgConn) verdict {
	rn.mu.Lock()
	p := rn.procs[c.index]
	planned := false
	for _, a := range p.open {
		for _, fl := range a.faults {
			planned = planned || atAck(fl)
		}
	}
	rn.mu.Unlock()
	c.mu.Lock()
	inTx := c.inTx
	c.mu.Unlock()
	if !planned || inTx {
		return verdict{}
	}
	// The server sends its replies to the statements before the Sync
	// only at the Sync, or at a Flush, which the proxy sends in its place
	// (it has no reply of its own).
	if _, err := c.server.Write([]byte{'H', 0, 0, 0, 4}); err != nil {
		return verdict{}
	}
	deadline := time.NewTimer(syncWait)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		running := false
		for _, s := range c.pending {
			running = running || !s.simple
		}
		if !running || c.q.failed {
			c.mu.Unlock()
			break
		}
		ch := make(chan struct{})
		c.q.heardCh = ch
		c.mu.Unlock()
		select {
		case <-ch:
			continue
		case <-deadline.C:
		case <-rn.ctx.Done():
		}
		return verdict{} // the server did not answer: the Sync goes on
	}
	c.mu.Lock()
	failed := c.q.failed
	c.mu.Unlock()
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if p.gen != c.gen || p.dead {
		return verdict{cut: true}
	}
	if failed {
		return verdict{}
	}
	for _, id := range c.q.scope.order {
		a := holding(p, id)
		if !c.q.scope.written[id] || a == nil {
			continue
		}
		for i, fl := range a.faults {
			if !atAck(fl) {
				continue
			}
			where := fmt.Sprintf("the Sync held that would commit the statement outside a transaction that finishes job %s, on db connection %d of %s", id, c.id, p.name())
			if fl.Kind == faults.Crash {
				rn.rolledBack(c, "the proxy held the Sync that would have committed it")
				rn.killAt(p, a, fl, where+": the server rolls it back")
				return verdict{cut: true}
			}
			a.faults = slices.Delete(a.faults, i, i+1) // strikes once: not again at the ReadyForQuery
			if !rn.pauseHeld(p, a, fl, where, c.gen) {
				return verdict{cut: true}
			}
			return verdict{}
		}
	}
	return verdict{}
}

// rolledBack turns the commit events of c's writes outside a transaction
// since it was last idle into aborts: their implicit transaction rolled
// back, why says why; rn.mu is held.
func (rn *run) rolledBack(c *pgConn, why string) {
	for _, i := range c.q.autoCommits {
		if i < len(rn.events) && rn.events[i].Kind == histories.Commit {
			rn.events[i].Kind = histories.Abort
			rn.events[i].Detail = "the statement's implicit transaction rolled back: " + why
		}
	}
	c.q.autoCommits = nil
}

// atAck reports whether fl strikes at an ack on the queue: a crash
// before-ack, or a lease-expired pause at the ack (index 1).
func atAck(fl faults.Fault) bool {
	return fl.Kind == faults.Crash && fl.Point == faults.BeforeAck ||
		fl.Kind == faults.Redelivery && fl.Variant == faults.LeaseExpired && fl.Index == 1
}

// queueCommitting is called as a COMMIT of c goes to the server; rn.mu is
// held. When the transaction finished a job the process holds, the
// COMMIT is its ack: a crash before-ack strikes there (the COMMIT is not
// forwarded, the server rolls back), and a lease-expired pause at the ack
// (index 1) stops the process with the COMMIT held.
func (rn *run) queueCommitting(c *pgConn, p *proc, sql string) (verdict, bool) {
	for _, id := range c.q.scope.order {
		if !c.q.scope.written[id] {
			continue
		}
		a := holding(p, id)
		if a == nil {
			continue
		}
		for _, fl := range a.faults {
			switch {
			case fl.Kind == faults.Crash && fl.Point == faults.BeforeAck:
				rn.killAt(p, a, fl, fmt.Sprintf("the COMMIT held that finishes job %s: %s, on db connection %d of %s, tx%d", id, shortSQL(sql), c.id, p.name(), c.tx))
				return verdict{cut: true}, true
			case fl.Kind == faults.Redelivery && fl.Variant == faults.LeaseExpired && fl.Index == 1:
				where := fmt.Sprintf("the COMMIT held that finishes job %s, on db connection %d of %s, tx%d", id, c.id, p.name(), c.tx)
				if !rn.pauseHeld(p, a, fl, where, c.gen) {
					return verdict{cut: true}, true
				}
			}
		}
	}
	return verdict{}, false
}

// queueResult settles c's scope as the server completes a COMMIT or a
// ROLLBACK; rn.mu is held. (Statements outside a transaction are settled
// at the end of their implicit one: queueIdle.) A crash after-ack or
// after-publish strikes as the reply to the commit that acked or
// published comes back.
func (rn *run) queueResult(c *pgConn, p *proc, tag string) (verdict, bool) {
	tx := fmt.Sprintf("tx%d", c.tx)
	switch tag {
	case "COMMIT":
		return rn.settle(c, p, true, tx, false)
	case "ROLLBACK":
		return rn.settle(c, p, false, tx, false)
	}
	return verdict{}, false
}

// settle ends c's scope, committed or rolled back (see the top of this
// file), the transaction named by tx ("" when unknown); auto says the
// server committed it by itself, outside a transaction. rn.mu is held; a
// pause releases it while the process stands still. It returns the
// verdict of a crash it struck.
//
// A job finished outside a transaction is committed by the server as it
// runs the statement, before the proxy can know the statement finishes
// it (the trigger's notice comes as it runs): a crash before-ack, and a
// lease-expired pause at the ack (index 1), strike there as the reply
// comes back, as a crash after-ack does.
func (rn *run) settle(c *pgConn, p *proc, committed bool, tx string, auto bool) (verdict, bool) {
	s := c.q.scope
	c.q.scope = pgScope{}
	where := fmt.Sprintf("db connection %d of %s", c.id, p.name())
	if tx != "" {
		where += ", " + tx
	}
	if !committed {
		for _, d := range s.delivered {
			if slices.Contains(p.open, d.a) {
				rn.end(p, d.a, histories.Nack, "the transaction that took the job rolled back ("+where+"): the job is free again")
			}
		}
		return verdict{}, false
	}
	var strikes, pauses []strike
	for _, id := range s.order {
		if !s.written[id] {
			continue
		}
		a := holding(p, id)
		if a == nil {
			if prev := rn.lastDelivery(p, id); prev != nil {
				rn.add(histories.Event{Kind: histories.Refused, Process: p.name(), Detail: fmt.Sprintf("a second ack of attempt %d: the commit on %s finishes job %s again", prev.n, where, id)})
			}
			continue
		}
		detail := fmt.Sprintf("the commit on %s finishes job %s", where, id)
		if other := rn.ackedBy(a); other != nil {
			detail = fmt.Sprintf("a late ack: attempt %d finished job %s already; the commit on %s finishes it again", other.n, id, where)
		}
		rn.end(p, a, histories.Ack, detail)
		for _, fl := range a.faults {
			switch {
			case fl.Kind == faults.Crash && fl.Point == AfterAck:
				strikes = append(strikes, strike{a, fl, "the reply held to the commit that finished job " + id + ", on " + where})
			case auto && fl.Kind == faults.Crash && fl.Point == faults.BeforeAck:
				strikes = append(strikes, strike{a, fl, "the reply held to the statement that finished job " + id + ", on " + where +
					": the server committed it as it ran it, before the proxy could know it was an ack"})
			case auto && fl.Kind == faults.Redelivery && fl.Variant == faults.LeaseExpired && fl.Index == 1:
				pauses = append(pauses, strike{a, fl, "the reply held to the statement that finished job " + id + ", on " + where})
			}
		}
	}
	for _, d := range s.delivered {
		if _, wrote := s.written[d.a.msg.ID]; wrote || !d.inTx || !slices.Contains(p.open, d.a) {
			continue // finished, leased, or taken outside a transaction
		}
		rn.end(p, d.a, histories.Nack, "the transaction that took the job ended without writing its row ("+where+"): its row lock is gone, the job is free again")
	}
	for _, o := range s.outputs {
		if st, ok := rn.publishRow(p, o, where); ok {
			strikes = append(strikes, st)
		}
	}
	// Everything the commit did is recorded: then the crash.
	if len(strikes) > 0 {
		st := strikes[0]
		rn.killAt(p, st.a, st.fl, st.where)
		return verdict{cut: true}, true
	}
	for _, st := range pauses {
		if !rn.pauseHeld(p, st.a, st.fl, st.where, c.gen) {
			return verdict{cut: true}, true
		}
	}
	return verdict{}, false
}

// strike is a crash due once a commit is recorded.
type strike struct {
	a     *attempt
	fl    faults.Fault
	where string
}

// publishRow records an output row committed; rn.mu is held. It returns
// the crash after-publish planned at the attempt's output of that number,
// if any: the number its insert got, as a crash before-publish counts
// (an output of a transaction rolled back has a number too).
func (rn *run) publishRow(p *proc, o scopedOutput, where string) (strike, bool) {
	n := o.out
	key := n.Cause
	if m, ok := rn.sent[n.Cause]; ok {
		key = m.Key
	}
	id := n.ID
	if id == "" {
		id = fmt.Sprintf("%s/no-id-%d", p.name(), len(rn.events)+1)
	}
	payload, err := model.Canonical(n.payloadBytes())
	if err != nil {
		payload, _ = json.Marshal(string(n.payloadBytes()))
	}
	out := model.Message{ID: id, Type: n.Type, Payload: payload, Causation: key}
	ev := histories.Event{Kind: histories.Publish, Process: p.name(), Message: &out}
	a := o.a
	if a != nil {
		ev.Attempt = a.n
		if a.msg.Key != key {
			ev.Detail = fmt.Sprintf("inserted while %s worked on %s, committed on %s", p.name(), a.msg.ID, where)
		}
	} else {
		ev.Detail = "inserted before any delivery to " + p.name()
	}
	rn.add(ev)
	if a == nil {
		return strike{}, false
	}
	for _, fl := range a.faults {
		if fl.Kind == faults.Crash && fl.Point == faults.AfterPublish && fl.Index == o.index {
			return strike{a, fl, fmt.Sprintf("the reply held to the commit of output %s, on %s", id, where)}, true
		}
	}
	return strike{}, false
}

// lastDelivery is the last attempt of p on copy id, open or not; rn.mu is
// held.
func (rn *run) lastDelivery(p *proc, id string) *attempt {
	for _, a := range slices.Backward(rn.attempts) {
		if a.proc == p && a.msg.ID == id {
			return a
		}
	}
	return nil
}

// ackedBy is another attempt on a's copy that was acknowledged, nil if
// none; rn.mu is held.
func (rn *run) ackedBy(a *attempt) *attempt {
	for _, b := range rn.attempts {
		if b != a && b.msg.ID == a.msg.ID && b.acked {
			return b
		}
	}
	return nil
}
