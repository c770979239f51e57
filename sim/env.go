package sim

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// backendFailed stops the run: the store failed (it cannot be reached, or
// restarted), so nothing this run observes from now on can be trusted.
func (e *env) backendFailed(err error) {
	if e.r.failure == nil {
		e.r.failure = fmt.Errorf("%s in %s: %w", e.proc.name, e.where(), err)
	}
	runtime.Goexit()
}

// check passes a store error on to the adapter, unless it is a backend
// failure, which stops the run.
func (e *env) check(err error) error {
	if errors.Is(err, adapters.ErrBackend) {
		e.backendFailed(err)
	}
	return err
}

// ErrPublishFailed is returned by Env.Publish when the broker rejects a
// publish or its confirmation is lost.
var ErrPublishFailed = errors.New("publish failed")

// ErrAckRefused is returned by Env.Ack when the copy's lease expired.
var ErrAckRefused = errors.New("ack refused: the lease expired and the copy was handed out again")

// env is the adapters.Env of one attempt or dispatcher pass. Its methods run
// on the task's goroutine: while the scheduler waits, or, in a free-running
// run, in parallel with other tasks, each touching the runner's state only
// inside runner.harness.
type env struct {
	r       *runner
	proc    *process
	task    *task
	kind    faults.Process
	at      int // 0-based delivery or pass number
	attempt int // 1-based attempt, 0 for a dispatcher pass
	pass    int // 1-based pass, 0 for an attempt
	msg     model.Message
	pos     logPos // where the copy came from, on the log broker

	acked, nacked, leaseExpired bool
	// leaseAt is the scheduling point of the attempt at which its lease
	// expires (-1: it does not); step counts the attempt's points.
	leaseAt, step     int
	passStart         int // runner.finished when a dispatcher pass began
	publishes, writes int
	cacheCommands     int // Env.Cache commands so far (cache.go)
	open              []*tx
	// publishFailed holds the publish indexes at which a planned publish
	// failure has struck this attempt: a fault hits one publish call, so a
	// retry of the same publish reaches the broker.
	publishFailed map[int]bool
}

var _ adapters.Env = (*env)(nil)

func (e *env) where() string {
	if e.attempt != 0 {
		return fmt.Sprintf("attempt %d", e.attempt)
	}
	return fmt.Sprintf("dispatcher pass %d", e.pass)
}

func (e *env) base(kind histories.Kind) histories.Event {
	return histories.Event{Kind: kind, Process: e.proc.name, Attempt: e.attempt, Pass: e.pass}
}

// boundary is a crash point and a scheduling point: the process may crash
// here, and then hands control back to the scheduler.
func (e *env) boundary(p faults.Point, index int) {
	f := faults.Fault{Kind: faults.Crash, Process: e.kind, At: e.at, Point: p}
	if p == faults.BeforePublish || p == faults.AfterPublish || p == faults.AfterWrite || p == faults.BeforeCache || p == faults.AfterCache {
		f.Index = index
	}
	e.r.offer(f)
	if e.r.cfg.Plan.Crashes(e.kind, e.at, p, index) {
		e.crash(string(p))
	}
	e.yield()
}

// yield parks the task until the scheduler resumes it. In a free-running
// run it only counts the boundary: tasks run in parallel.
func (e *env) yield() {
	r := e.r
	e.leaseStep()
	if r.free {
		r.boundaries++
		return
	}
	if r.othersCanAct(e.proc) {
		r.offer(faults.Fault{Kind: faults.Concurrent, At: r.boundaries})
	}
	if r.cfg.Plan.PreemptsAt(r.boundaries) {
		r.preempt = true
	}
	r.boundaries++
	if !r.preempt && r.failure == nil && r.boundaries < boundariesPerDelivery*r.bound {
		// The scheduler would resume this task at once (see runner.run
		// and runner.next): skip the round trip through it.
		return
	}
	t := e.task
	t.parked <- struct{}{}
	select {
	case <-t.resume:
	case <-r.kill:
		runtime.Goexit()
	}
}

// leaseStep counts a scheduling point of an attempt; the lease expires
// here if the plan says so (or might, when exploring): the broker queues
// the copy again at the head, and the holder is preempted, so that another
// consumer takes it while the holder still works on it.
func (e *env) leaseStep() {
	if e.attempt == 0 || e.acked || e.nacked || e.leaseExpired {
		return
	}
	step := e.step
	e.step++
	if !e.r.cfg.Format12 {
		e.r.offer(faults.Fault{Kind: faults.Redelivery, At: e.at, Variant: faults.LeaseExpired, Index: step})
	}
	if step != e.leaseAt {
		return
	}
	r := e.r
	if r.log != nil {
		r.logExpire(e, step)
		if r.othersCanAct(e.proc) {
			r.preempt, r.leaseSwitch = true, true
		}
		return
	}
	e.leaseExpired = true
	delete(r.inflight, e.attempt)
	r.queue = append([]model.Message{e.msg}, r.queue...)
	r.record(histories.Event{Kind: histories.Requeue, Process: "broker", Attempt: e.attempt,
		Detail: fmt.Sprintf("lease expires while the handler works (at its step %d): %s is queued again", step+1, e.msg.ID), Fault: string(faults.Redelivery)})
	if !r.free && r.othersCanAct(e.proc) {
		r.preempt, r.leaseSwitch = true, true
	}
}

// crash kills the process: open transactions abort, the unacked copy goes
// back to the broker (its lease expires), and the goroutine stops here.
func (e *env) crash(point string) {
	ev := e.base(histories.Crash)
	ev.Point, ev.Fault = point, string(faults.Crash)
	e.r.record(ev)
	for _, t := range e.open {
		if !t.finished {
			t.finished = true
			_ = t.inner.Abort()
			ab := e.base(histories.Abort)
			ab.Tx, ab.Detail = t.n, "process crashed"
			e.r.record(ab)
		}
	}
	e.proc.alive = false
	switch {
	case e.r.log != nil && e.kind == faults.Consumer:
		e.r.logLeave(e)
	case e.attempt != 0 && !e.acked && !e.nacked:
		e.requeue()
	}
	runtime.Goexit()
}

func (e *env) requeue() {
	if e.leaseExpired {
		return // the broker has already handed the copy out again
	}
	m := e.r.inflight[e.attempt]
	delete(e.r.inflight, e.attempt)
	e.r.queue = append(e.r.queue, m)
}

func (e *env) finishTxs() {
	for _, t := range e.open {
		if !t.finished {
			t.finished = true
			_ = t.inner.Rollback()
			ab := e.base(histories.Abort)
			ab.Tx, ab.Detail = t.n, "not committed"
			e.r.record(ab)
		}
	}
}

func (e *env) Model() model.Model { return e.r.cfg.Model }

func (e *env) Begin() (adapters.Tx, error) { return e.begin(adapters.TxOptions{}), nil }

func (e *env) BeginTx(o adapters.TxOptions) (adapters.Tx, error) { return e.begin(o), nil }

// begin opens a transaction on the store and records it; a store that
// cannot begin one ends the run.
func (e *env) begin(o adapters.TxOptions) *tx {
	inner, err := e.r.store.Begin(o)
	var t *tx
	e.r.harness(func() {
		if err != nil {
			e.backendFailed(err)
		}
		t = e.opened(inner)
	})
	return t
}

// handed is the Env a handler or a dispatcher gets: e, extended by the
// store when it offers more (the pg backend's SQL transactions).
func (r *runner) handed(e *env) adapters.Env {
	if x, ok := r.store.(adapters.EnvExtender); ok {
		return x.ExtendEnv(e, e.beginHarnessed)
	}
	return e
}

// beginHarnessed opens a transaction for a store's own kind of transaction
// (adapters.EnvExtender), as Begin does.
func (e *env) beginHarnessed(o adapters.TxOptions) (adapters.HarnessedTx, error) {
	return e.begin(o), nil
}

// opened records a transaction the store began; it is a crash point.
func (e *env) opened(inner adapters.StoreTx) *tx {
	t := &tx{env: e, inner: inner, n: len(e.r.txs) + 1}
	e.r.txs = append(e.r.txs, t)
	e.r.byInner[inner] = t
	e.open = append(e.open, t)
	ev := e.base(histories.Begin)
	ev.Tx = t.n
	e.r.record(ev)
	e.boundary(faults.AfterBegin, 0)
	return t
}

// Publish publishes msgs in order, one publish each. A "rejected" failure
// refuses the whole call; "partial" accepts the messages before the failing
// one; "lost-ack" accepts the message but reports a failure.
func (e *env) Publish(msgs ...model.Message) (err error) {
	e.r.harness(func() { err = e.publish(msgs) })
	return err
}

func (e *env) publish(msgs []model.Message) error {
	if len(msgs) > 0 {
		e.r.offer(faults.Fault{Kind: faults.PublishFailure, Process: e.kind, At: e.at, Index: e.publishes, Variant: faults.Rejected})
	}
	for i := range msgs {
		if e.publishFailure(e.publishes+i) == faults.Rejected {
			e.struck(e.publishes + i)
			e.boundary(faults.BeforePublish, e.publishes)
			ev := e.base(histories.Refused)
			ev.Detail = fmt.Sprintf("broker rejected a batch of %d publishes", len(msgs))
			ev.Fault = string(faults.PublishFailure)
			e.r.record(ev)
			return fmt.Errorf("%w: rejected by the broker", ErrPublishFailed)
		}
	}
	for i, m := range msgs {
		n := e.publishes
		e.boundary(faults.BeforePublish, n)
		if i > 0 {
			e.r.offer(faults.Fault{Kind: faults.PublishFailure, Process: e.kind, At: e.at, Index: n, Variant: faults.Partial})
		}
		e.r.offer(faults.Fault{Kind: faults.PublishFailure, Process: e.kind, At: e.at, Index: n, Variant: faults.LostConfirm})
		if m.Causation == "" && e.attempt != 0 {
			m.Causation = e.msg.Key
		}
		failure := e.publishFailure(n)
		if failure == faults.Partial || failure == faults.LostConfirm {
			e.struck(n)
		}
		if failure == faults.Partial {
			ev := e.base(histories.Refused)
			ev.Message = &m
			ev.Detail, ev.Fault = "broker failed part-way through the batch", string(faults.PublishFailure)
			e.r.record(ev)
			return fmt.Errorf("%w: the batch was only partly accepted", ErrPublishFailed)
		}
		ev := e.base(histories.Publish)
		ev.Message = &m
		e.r.record(ev)
		e.publishes++
		if failure == faults.LostConfirm {
			ev := e.base(histories.Refused)
			ev.Message = &m
			ev.Detail, ev.Fault = "publish accepted, but its confirmation was lost", string(faults.PublishFailure)
			e.r.record(ev)
			return fmt.Errorf("%w: no confirmation from the broker", ErrPublishFailed)
		}
		e.boundary(faults.AfterPublish, n)
	}
	return nil
}

// publishFailure returns the publish failure the plan places at the n-th
// publish of this attempt, unless it has struck already (see struck): a
// failure strikes once, and the broker takes a retry of that publish.
func (e *env) publishFailure(n int) string {
	if e.publishFailed[n] {
		return ""
	}
	return e.r.cfg.Plan.PublishFailure(e.kind, e.at, n)
}

// struck records that the publish failure at the n-th publish struck.
func (e *env) struck(n int) {
	if e.publishFailed == nil {
		e.publishFailed = map[int]bool{}
	}
	e.publishFailed[n] = true
}

func (e *env) Ack() (err error) {
	e.r.harness(func() { err = e.ack() })
	return err
}

func (e *env) ack() error {
	if e.attempt == 0 {
		return errors.New("ack outside a delivery")
	}
	if e.acked || e.nacked {
		return errors.New("delivery already acked or nacked")
	}
	e.boundary(faults.BeforeAck, 0)
	if e.r.log != nil {
		return e.logCommit()
	}
	if !e.leaseExpired {
		e.r.offer(faults.Fault{Kind: faults.Redelivery, At: e.at})
	}
	e.acked = true
	e.r.record(e.base(histories.Ack))
	switch {
	case e.leaseExpired:
		ev := e.base(histories.Refused)
		ev.Detail = "ack refused: the lease had expired"
		e.r.record(ev)
		return ErrAckRefused
	case e.r.cfg.Plan.LosesAck(e.at):
		ev := e.base(histories.AckLost)
		ev.Fault = string(faults.Redelivery)
		e.r.record(ev)
		e.requeue()
		return nil
	}
	delete(e.r.inflight, e.attempt)
	return nil
}

func (e *env) Nack(reason string) (err error) {
	e.r.harness(func() {
		switch {
		case e.attempt == 0:
			err = errors.New("nack outside a delivery")
		case e.acked || e.nacked:
			err = errors.New("delivery already acked or nacked")
		default:
			e.nack(reason)
		}
	})
	return err
}

func (e *env) nack(reason string) {
	e.nacked = true
	ev := e.base(histories.Nack)
	ev.Detail = reason
	e.r.record(ev)
	if e.r.log != nil {
		e.r.logNack(e)
		return
	}
	e.requeue()
}

func (e *env) NewID() (id string) {
	e.r.harness(func() {
		e.r.ids++
		id = fmt.Sprintf("id%d", e.r.ids)
	})
	return id
}

func (e *env) Point(name string) { e.r.harness(func() { e.boundary(faults.Point(name), 0) }) }

// tx wraps a store transaction with events and boundaries.
type tx struct {
	env      *env
	inner    adapters.StoreTx
	n        int
	finished bool
}

var _ adapters.HarnessedTx = (*tx)(nil)

// StoreTx implements adapters.HarnessedTx.
func (t *tx) StoreTx() adapters.StoreTx { return t.inner }

// Wrote implements adapters.HarnessedTx.
func (t *tx) Wrote(what string) {
	e := t.env
	e.r.harness(func() { e.wrote(t.n, what) })
}

// Check implements adapters.HarnessedTx.
func (t *tx) Check(err error) error { return t.checked(err) }

// checked passes a store error on, in the harness (see env.check).
func (t *tx) checked(err error) error {
	if err != nil {
		t.env.r.harness(func() { err = t.env.check(err) })
	}
	return err
}

func (t *tx) Get(table, key string) ([]byte, bool, error) {
	v, ok, err := t.inner.Get(table, key)
	return v, ok, t.read(err)
}

func (t *tx) GetForUpdate(table, key string) ([]byte, bool, error) {
	v, ok, err := t.inner.GetForUpdate(table, key)
	return v, ok, t.read(err)
}

func (t *tx) Scan(table string) ([]adapters.Row, error) {
	rows, err := t.inner.Scan(table)
	return rows, t.read(err)
}

func (t *tx) Claim(table string) ([]adapters.Row, error) {
	rows, err := t.inner.Claim(table)
	return rows, t.read(err)
}

// read passes a read's error on (see checked); a read that succeeded is a
// scheduling point when reads preempt (Config.ReadsPreempt).
func (t *tx) read(err error) error {
	if err = t.checked(err); err == nil {
		t.Read()
	}
	return err
}

// Read implements adapters.HarnessedTx: with Config.ReadsPreempt, the
// task may be preempted here, after its read.
func (t *tx) Read() {
	e := t.env
	if e.r.cfg.ReadsPreempt {
		e.r.harness(e.yield)
	}
}

func (t *tx) wrote(table, key string, err error) error {
	if err != nil {
		return t.checked(err)
	}
	t.env.r.harness(func() { t.env.wrote(t.n, table+"/"+key) })
	return nil
}

// wrote records a write of transaction n; it is a crash point.
func (e *env) wrote(n int, detail string) {
	ev := e.base(histories.Write)
	ev.Tx, ev.Detail = n, detail
	e.r.record(ev)
	w := e.writes
	e.writes++
	e.boundary(faults.AfterWrite, w)
}

func (t *tx) Put(table, key string, value []byte) error {
	return t.wrote(table, key, t.inner.Put(table, key, value))
}

func (t *tx) Insert(table, key string, value []byte) error {
	return t.wrote(table, key, t.inner.Insert(table, key, value))
}

func (t *tx) Delete(table, key string) error {
	return t.wrote(table, key, t.inner.Delete(table, key))
}

func (t *tx) Commit() (err error) {
	e := t.env
	e.r.harness(func() {
		if t.finished {
			err = errors.New("transaction already finished")
			return
		}
		e.boundary(faults.BeforeCommit, 0)
		t.finished = true
	})
	if err != nil {
		return err
	}
	err = t.inner.Commit()
	e.r.harness(func() {
		if err != nil {
			err = e.check(err)
			ev := e.base(histories.Abort)
			ev.Tx, ev.Detail = t.n, err.Error()
			e.r.record(ev)
			return
		}
		ev := e.base(histories.Commit)
		ev.Tx = t.n
		ev.Detail = strings.Join(sortedCopy(t.inner.Writes()), ", ")
		e.r.record(ev)
		e.boundary(faults.AfterCommit, 0)
	})
	return err
}

func (t *tx) Rollback() error {
	done := false
	t.env.r.harness(func() {
		if done = t.finished; done {
			return
		}
		t.finished = true
		ev := t.env.base(histories.Abort)
		ev.Tx, ev.Detail = t.n, "rolled back"
		t.env.r.record(ev)
	})
	if done {
		return nil
	}
	return t.checked(t.inner.Rollback())
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
