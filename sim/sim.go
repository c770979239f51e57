// Package sim is the deterministic simulation: a broker with at-least-once
// delivery, a consumer process that runs the adapter's handler and is rebuilt
// from its factory after a crash, an optional dispatcher process, the drain
// phase, and one scheduler that decides every step.
//
// A run is a pure function of (workload, plan, strategy): there is no wall
// clock, no global randomness and no dependence on map or goroutine order.
// Each attempt runs on a goroutine of its own only so that a crash can stop
// it at any boundary (runtime.Goexit); the scheduler waits for it, so exactly
// one piece of code runs at a time.
package sim

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/memstore"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// Config describes one run.
type Config struct {
	Model    model.Model
	Strategy adapters.Strategy
	Workload model.Workload
	Plan     faults.Plan
	// MaxDeliveries bounds the deliveries (and dispatcher passes) before
	// the run is declared stuck; 0 picks a bound from the workload size.
	MaxDeliveries int
}

// ErrInfrastructure wraps failures of the run itself (an adapter that
// panicked, a store that failed): the verdict is inconclusive.
var ErrInfrastructure = errors.New("infrastructure failure")

// Run executes the run and returns its events.
func Run(cfg Config) ([]histories.Event, error) {
	if cfg.Model == nil || cfg.Strategy.NewHandler == nil {
		return nil, errors.New("sim: a model and a strategy are required")
	}
	bound := cfg.MaxDeliveries
	if bound == 0 {
		bound = 10*len(cfg.Workload) + 10*len(cfg.Plan.Faults) + 20
	}
	r := &runner{
		cfg:      cfg,
		store:    memstore.New(),
		inflight: map[int]model.Message{},
		bound:    bound,
	}
	r.horizonDeliveries, r.horizonPasses = cfg.Plan.Horizon()
	if err := r.run(); err != nil {
		return r.events, fmt.Errorf("%w: %v", ErrInfrastructure, err)
	}
	return r.events, nil
}

type process struct {
	name       string
	handler    adapters.Handler
	dispatcher adapters.Dispatcher
	alive      bool
	started    bool
}

type runner struct {
	cfg      Config
	store    *memstore.Store
	events   []histories.Event
	queue    []model.Message       // copies waiting for delivery, in order
	inflight map[int]model.Message // unacked copy of each running attempt

	deliveries, passes               int
	horizonDeliveries, horizonPasses int
	bound                            int
	ids, txs                         int
	drained                          bool

	consumer, dispatcher process
}

func (r *runner) record(ev histories.Event) {
	ev.Step = len(r.events) + 1
	r.events = append(r.events, ev)
}

func (r *runner) run() error {
	r.consumer = process{name: "consumer-1"}
	if r.cfg.Strategy.NewDispatcher != nil {
		r.dispatcher = process{name: "dispatcher-1"}
	}
	for i := range r.cfg.Workload {
		m := r.cfg.Workload[i]
		r.record(histories.Event{Kind: histories.Send, Process: "sender", Message: &m})
		r.queue = append(r.queue, m)
	}
	hasDispatcher := r.cfg.Strategy.NewDispatcher != nil
	for {
		if !r.drained && r.deliveries >= r.horizonDeliveries && r.passes >= r.horizonPasses {
			r.drained = true
			r.record(histories.Event{Kind: histories.Drain, Process: "broker"})
		}
		if len(r.queue) > 0 {
			if r.deliveries >= r.bound {
				r.stuck()
				return nil
			}
			if err := r.deliverNext(); err != nil {
				return err
			}
			if hasDispatcher {
				if _, err := r.dispatchPass(); err != nil {
					return err
				}
			}
			continue
		}
		if hasDispatcher {
			if r.passes >= r.bound {
				r.stuck()
				return nil
			}
			busy, err := r.dispatchPass()
			if err != nil {
				return err
			}
			if busy {
				continue
			}
		}
		break
	}
	return r.observe()
}

func (r *runner) stuck() {
	var left []string
	for _, m := range r.queue {
		left = append(left, m.ID)
	}
	r.record(histories.Event{Kind: histories.Stuck, Process: "broker", Detail: fmt.Sprintf(
		"after %d deliveries and %d dispatcher passes, %d copies are still queued (%s)",
		r.deliveries, r.passes, len(r.queue), strings.Join(left, ", "))})
}

func (r *runner) start(p *process) {
	if p.alive {
		return
	}
	if p.started {
		r.record(histories.Event{Kind: histories.Restart, Process: p.name})
	}
	p.started, p.alive = true, true
	if p == &r.dispatcher {
		p.dispatcher = r.cfg.Strategy.NewDispatcher()
	} else {
		p.handler = r.cfg.Strategy.NewHandler()
	}
}

func (r *runner) deliverNext() error {
	r.start(&r.consumer)
	msg := r.queue[0]
	r.queue = r.queue[1:]
	at := r.deliveries
	r.deliveries++
	attempt := at + 1
	r.inflight[attempt] = msg
	r.record(histories.Event{Kind: histories.Deliver, Process: r.consumer.name, Attempt: attempt, Message: &msg})
	env := &env{r: r, proc: &r.consumer, kind: faults.Consumer, at: at, attempt: attempt, msg: msg}
	return r.execute(env, func() error {
		env.crashPoint(faults.BeforeHandle, 0)
		return r.consumer.handler.Handle(env, msg)
	})
}

func (r *runner) dispatchPass() (bool, error) {
	r.start(&r.dispatcher)
	at := r.passes
	r.passes++
	env := &env{r: r, proc: &r.dispatcher, kind: faults.Dispatcher, at: at, pass: at + 1}
	busy := false
	r.record(histories.Event{Kind: histories.Dispatch, Process: r.dispatcher.name, Pass: at + 1})
	err := r.execute(env, func() error {
		b, err := r.dispatcher.dispatcher.Pass(env)
		busy = b
		return err
	})
	return busy || env.crashed, err
}

// execute runs fn (an attempt or a pass) on its own goroutine and waits for
// it: it returns, panics, or crashes (runtime.Goexit in env.crash).
func (r *runner) execute(e *env, fn func() error) error {
	done := make(chan struct{})
	var (
		handlerErr error
		panicked   any
		returned   bool
	)
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				panicked = p
			}
		}()
		handlerErr = fn()
		returned = true
	}()
	<-done
	if panicked != nil {
		return fmt.Errorf("%s panicked in %s: %v", r.cfg.Strategy.Name, e.where(), panicked)
	}
	if !returned {
		return nil // crashed: recorded by env.crash
	}
	e.finishTxs()
	if e.attempt != 0 {
		if !e.acked && !e.nacked {
			reason := "handler returned without ack"
			if handlerErr != nil {
				reason = handlerErr.Error()
			}
			e.nack(reason)
		}
		r.record(histories.Event{Kind: histories.Done, Process: e.proc.name, Attempt: e.attempt, Detail: errText(handlerErr)})
		return nil
	}
	if handlerErr != nil {
		r.record(histories.Event{Kind: histories.Done, Process: e.proc.name, Pass: e.pass, Detail: errText(handlerErr)})
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (r *runner) observe() error {
	r.start(&r.consumer)
	for _, agg := range r.cfg.Workload.Aggregates() {
		tx := r.store.Begin()
		st, err := r.consumer.handler.Observe(tx, r.cfg.Model, agg)
		_ = tx.Rollback()
		if err != nil {
			return fmt.Errorf("observe %s: %w", agg, err)
		}
		r.record(histories.Event{Kind: histories.Observe, Process: "observer", Aggregate: agg, State: st})
	}
	return nil
}

// env is the adapters.Env of one attempt or dispatcher pass.
type env struct {
	r       *runner
	proc    *process
	kind    faults.Process
	at      int // 0-based delivery or pass number
	attempt int // 1-based attempt, 0 for a dispatcher pass
	pass    int // 1-based pass, 0 for an attempt
	msg     model.Message

	acked, nacked, crashed bool
	publishes, writes      int
	open                   []*tx
}

func (e *env) where() string {
	if e.attempt != 0 {
		return fmt.Sprintf("attempt %d", e.attempt)
	}
	return fmt.Sprintf("dispatcher pass %d", e.pass)
}

func (e *env) base(kind histories.Kind) histories.Event {
	return histories.Event{Kind: kind, Process: e.proc.name, Attempt: e.attempt, Pass: e.pass}
}

// crashPoint crashes the process if the plan says so.
func (e *env) crashPoint(p faults.Point, index int) {
	if e.r.cfg.Plan.Crashes(e.kind, e.at, p, index) {
		e.crash(string(p))
	}
}

// crash kills the process: open transactions abort, the unacked copy goes
// back to the broker (its lease expires), and the goroutine stops here.
func (e *env) crash(point string) {
	ev := e.base(histories.Crash)
	ev.Point = point
	e.r.record(ev)
	for _, t := range e.open {
		if !t.finished {
			t.finished = true
			_ = t.inner.Rollback()
			ab := e.base(histories.Abort)
			ab.Tx, ab.Detail = t.n, "process crashed"
			e.r.record(ab)
		}
	}
	e.proc.alive = false
	e.crashed = true
	if e.attempt != 0 && !e.acked && !e.nacked {
		e.requeue()
	}
	runtime.Goexit()
}

func (e *env) requeue() {
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

func (e *env) Begin() (adapters.Tx, error) {
	e.r.txs++
	t := &tx{env: e, inner: e.r.store.Begin(), n: e.r.txs}
	e.open = append(e.open, t)
	ev := e.base(histories.Begin)
	ev.Tx = t.n
	e.r.record(ev)
	e.crashPoint(faults.AfterBegin, 0)
	return t, nil
}

func (e *env) Publish(msgs ...model.Message) error {
	for _, m := range msgs {
		e.crashPoint(faults.BeforePublish, e.publishes)
		if m.Causation == "" && e.attempt != 0 {
			m.Causation = e.msg.Key
		}
		ev := e.base(histories.Publish)
		ev.Message = &m
		e.r.record(ev)
		e.crashPoint(faults.AfterPublish, e.publishes)
		e.publishes++
	}
	return nil
}

func (e *env) Ack() error {
	if e.attempt == 0 {
		return errors.New("ack outside a delivery")
	}
	if e.acked || e.nacked {
		return errors.New("delivery already acked or nacked")
	}
	e.crashPoint(faults.BeforeAck, 0)
	e.acked = true
	e.r.record(e.base(histories.Ack))
	if e.r.cfg.Plan.LosesAck(e.at) {
		e.r.record(e.base(histories.AckLost))
		e.requeue()
		return nil
	}
	delete(e.r.inflight, e.attempt)
	return nil
}

func (e *env) Nack(reason string) error {
	if e.attempt == 0 {
		return errors.New("nack outside a delivery")
	}
	if e.acked || e.nacked {
		return errors.New("delivery already acked or nacked")
	}
	e.nack(reason)
	return nil
}

func (e *env) nack(reason string) {
	e.nacked = true
	ev := e.base(histories.Nack)
	ev.Detail = reason
	e.r.record(ev)
	e.requeue()
}

func (e *env) NewID() string {
	e.r.ids++
	return fmt.Sprintf("id%d", e.r.ids)
}

func (e *env) Point(name string) { e.crashPoint(faults.Point(name), 0) }

// tx wraps a store transaction with events and crash points.
type tx struct {
	env      *env
	inner    *memstore.Tx
	n        int
	finished bool
}

func (t *tx) Get(table, key string) ([]byte, bool, error) { return t.inner.Get(table, key) }

func (t *tx) Scan(table string) ([]adapters.Row, error) { return t.inner.Scan(table) }

func (t *tx) wrote(table, key string, err error) error {
	if err != nil {
		return err
	}
	ev := t.env.base(histories.Write)
	ev.Tx, ev.Detail = t.n, table+"/"+key
	t.env.r.record(ev)
	t.env.crashPoint(faults.AfterWrite, t.env.writes)
	t.env.writes++
	return nil
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

func (t *tx) Commit() error {
	if t.finished {
		return memstore.ErrDone
	}
	t.env.crashPoint(faults.BeforeCommit, 0)
	t.finished = true
	if err := t.inner.Commit(); err != nil {
		ev := t.env.base(histories.Abort)
		ev.Tx, ev.Detail = t.n, err.Error()
		t.env.r.record(ev)
		return err
	}
	ev := t.env.base(histories.Commit)
	ev.Tx = t.n
	ev.Detail = strings.Join(sortedCopy(t.inner.Writes()), ", ")
	t.env.r.record(ev)
	t.env.crashPoint(faults.AfterCommit, 0)
	return nil
}

func (t *tx) Rollback() error {
	if t.finished {
		return nil
	}
	t.finished = true
	ev := t.env.base(histories.Abort)
	ev.Tx, ev.Detail = t.n, "rolled back"
	t.env.r.record(ev)
	return t.inner.Rollback()
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
